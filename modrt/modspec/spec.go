package modspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/edgev2/edgev2/fault"
)

// MaxSpecSize caps a module spec document, createOptions included.
const MaxSpecSize = 256 << 10

// The module type and image pull policies a Spec may name.
const (
	TypeDocker = "docker"

	PullOnCreate = "on-create"
	PullNever    = "never"

	// restartOnUnhealthy is edgeAgent's name; edgev2 has no health checks,
	// so a module that stops is simply restarted, as with "always".
	restartOnUnhealthy = "on-unhealthy"
)

// Spec is a module as aziot-edged's management API describes it (its
// ModuleSpec JSON), plus edgev2's restartPolicy. Build one with ParseSpec,
// which accepts the shapes edgeAgent and deployment manifests use; json.Marshal
// gives back the management API shape (env as a list, createOptions as an object).
type Spec struct {
	Name            string     `json:"name"`
	Type            string     `json:"type"`
	ImagePullPolicy string     `json:"imagePullPolicy,omitempty"`
	Config          SpecConfig `json:"config"`
	// RestartPolicy is an edgev2 extension: never, on-failure (default) or
	// always; edgeAgent's "on-unhealthy" is read as "always".
	RestartPolicy RestartPolicy `json:"restartPolicy,omitempty"`
}

// SpecConfig is ModuleSpec.config.
type SpecConfig struct {
	Settings Settings `json:"settings"`
	Env      []EnvVar `json:"env,omitempty"`
}

// EnvVar is one entry of config.env.
type EnvVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Settings is config.settings of a "docker" module.
type Settings struct {
	Image         string        `json:"image"`
	ImageHash     string        `json:"imageHash,omitempty"`
	CreateOptions CreateOptions `json:"createOptions,omitzero"`
	Digest        string        `json:"digest,omitempty"`
	Auth          *Auth         `json:"auth,omitempty"`
}

// Auth is the registry credential edgeAgent passes along with a module.
type Auth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
}

// String keeps the password out of logs and error messages.
func (a Auth) String() string {
	return fmt.Sprintf("{username:%q password:<redacted> serveraddress:%q}", a.Username, a.ServerAddress)
}

// GoString keeps the password out of %#v.
func (a Auth) GoString() string { return a.String() }

// Redacted returns a copy of s without registry credentials, fit for
// container labels, logs and API responses.
func (s *Spec) Redacted() Spec {
	c := *s
	c.Config.Settings.Auth = nil
	return c
}

// CreateOptions is the subset of Docker's container-create body that edgev2
// honours. ParseSpec rejects every other field that asks for something.
type CreateOptions struct {
	Hostname     string              `json:"Hostname,omitempty"`
	User         string              `json:"User,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Cmd          []string            `json:"Cmd,omitzero"`
	Entrypoint   []string            `json:"Entrypoint,omitzero"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	HostConfig   HostConfig          `json:"HostConfig,omitzero"`
	// NetworkingConfig is kept for round trips only: edgeAgent adds its
	// "azure-iot-edge" endpoint to every module, and edgev2 has no networks.
	NetworkingConfig json.RawMessage `json:"NetworkingConfig,omitempty"`
}

// HostConfig is the honoured subset of Docker's HostConfig.
type HostConfig struct {
	Binds          []string        `json:"Binds,omitempty"`
	Mounts         []Mount         `json:"Mounts,omitempty"`
	CapAdd         []string        `json:"CapAdd,omitempty"`
	CapDrop        []string        `json:"CapDrop,omitempty"`
	Privileged     bool            `json:"Privileged,omitempty"`
	Memory         int64           `json:"Memory,omitempty"`
	NanoCpus       int64           `json:"NanoCpus,omitempty"`
	PidsLimit      int64           `json:"PidsLimit,omitempty"` // 0: the policy's default; -1: none (Docker's "unlimited")
	NetworkMode    string          `json:"NetworkMode,omitempty"`
	PidMode        string          `json:"PidMode,omitempty"`
	ReadonlyRootfs bool            `json:"ReadonlyRootfs,omitempty"`
	LogConfig      LogConfig       `json:"LogConfig,omitzero"`
	PortBindings   json.RawMessage `json:"PortBindings,omitempty"`
}

// Mount is one entry of HostConfig.Mounts.
type Mount struct {
	Type         string        `json:"Type"`
	Source       string        `json:"Source,omitempty"`
	Target       string        `json:"Target"`
	ReadOnly     bool          `json:"ReadOnly,omitempty"`
	BindOptions  *BindOptions  `json:"BindOptions,omitempty"`
	TmpfsOptions *TmpfsOptions `json:"TmpfsOptions,omitempty"`
}

// BindOptions is Mount.BindOptions.
type BindOptions struct {
	Propagation  string `json:"Propagation,omitempty"`
	NonRecursive bool   `json:"NonRecursive,omitempty"`
}

// TmpfsOptions is Mount.TmpfsOptions.
type TmpfsOptions struct {
	SizeBytes int64  `json:"SizeBytes,omitempty"`
	Mode      uint32 `json:"Mode,omitempty"`
}

// LogConfig is HostConfig.LogConfig.
type LogConfig struct {
	Type   string            `json:"Type,omitempty"`
	Config map[string]string `json:"Config,omitempty"`
}

// reservedLabelPrefix is where the runtime records owner and spec; a module
// must not be able to forge them.
const reservedLabelPrefix = "org.edgev2."

// wireSpec is what arrives: env and createOptions in more than one shape.
type wireSpec struct {
	Name            string `json:"name"`
	Type            string `json:"type"`
	ImagePullPolicy string `json:"imagePullPolicy"`
	RestartPolicy   string `json:"restartPolicy"`
	Config          struct {
		Settings map[string]json.RawMessage `json:"settings"`
		Env      json.RawMessage            `json:"env"`
	} `json:"config"`
}

// ParseSpec decodes and validates a module spec in aziot-edged's ModuleSpec
// JSON. It accepts config.env as the management API's [{key, value}] list or
// the deployment manifest's {"KEY": {"value": "..."}} map, and
// settings.createOptions as a JSON object or a string holding one (also split
// over createOptions01, createOptions02, ... as manifests do). Unknown fields
// are ignored except inside createOptions, where anything edgev2 cannot honour
// is an error. Defaults are filled in: imagePullPolicy on-create, restartPolicy
// on-failure.
func ParseSpec(data []byte) (*Spec, error) {
	if len(data) > MaxSpecSize {
		return nil, fault.New(fault.InvalidArgs, "module spec is %d bytes, more than the %d allowed", len(data), MaxSpecSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fault.New(fault.InvalidArgs, "module spec is empty")
	}
	var w wireSpec
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, jsonFault("module spec", err)
	}
	s := &Spec{
		Name:            w.Name,
		Type:            w.Type,
		ImagePullPolicy: w.ImagePullPolicy,
		RestartPolicy:   RestartPolicy(w.RestartPolicy),
	}
	if s.ImagePullPolicy == "" {
		s.ImagePullPolicy = PullOnCreate
	}
	switch s.RestartPolicy {
	case "":
		s.RestartPolicy = RestartOnFailure
	case restartOnUnhealthy:
		s.RestartPolicy = RestartAlways
	}
	env, err := parseEnv(w.Config.Env)
	if err != nil {
		return nil, err
	}
	s.Config.Env = env
	if err := parseSettings(w.Config.Settings, &s.Config.Settings); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func parseEnv(raw json.RawMessage) ([]EnvVar, error) {
	if isNull(raw) {
		return nil, nil
	}
	switch firstByte(raw) {
	case '[':
		var list []struct {
			Key   *string         `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, jsonFault("config.env", err)
		}
		env := make([]EnvVar, 0, len(list))
		for i, e := range list {
			if e.Key == nil {
				return nil, fault.New(fault.InvalidArgs, "config.env[%d] has no key", i)
			}
			v, err := envValue(e.Value, "config.env["+strconv.Itoa(i)+"].value")
			if err != nil {
				return nil, err
			}
			env = append(env, EnvVar{Key: *e.Key, Value: v})
		}
		return env, nil
	case '{':
		var m map[string]struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, jsonFault("config.env", err)
		}
		env := make([]EnvVar, 0, len(m))
		for k, e := range m {
			v, err := envValue(e.Value, "config.env."+Quote(k)+".value")
			if err != nil {
				return nil, err
			}
			env = append(env, EnvVar{Key: k, Value: v})
		}
		sort.Slice(env, func(i, j int) bool { return env[i].Key < env[j].Key })
		return env, nil
	default:
		return nil, fault.New(fault.InvalidArgs, "config.env must be a list of {key, value} or an object of {\"value\": ...}")
	}
}

// envValue takes a string, or a number or boolean as written (manifests
// written by hand have "value": 5).
func envValue(raw json.RawMessage, field string) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err == nil {
		switch v.(type) {
		case float64, bool:
			return string(bytes.TrimSpace(raw)), nil
		}
	}
	return "", fault.New(fault.InvalidArgs, "%s must be a string", field)
}

var chunkKey = regexp.MustCompile(`^createOptions([0-9]{2})$`)

func parseSettings(m map[string]json.RawMessage, st *Settings) error {
	if m == nil {
		return fault.New(fault.InvalidArgs, "config.settings is missing")
	}
	str := func(key string, dst *string) error {
		raw, ok := m[key]
		if !ok || isNull(raw) {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fault.New(fault.InvalidArgs, "config.settings.%s must be a string", key)
		}
		return nil
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"image", &st.Image}, {"imageHash", &st.ImageHash}, {"digest", &st.Digest}} {
		if err := str(f.key, f.dst); err != nil {
			return err
		}
	}
	if raw, ok := m["auth"]; ok && !isNull(raw) {
		var a Auth
		if err := json.Unmarshal(raw, &a); err != nil {
			// The cause may quote the password: keep it out of the message.
			return fault.New(fault.InvalidArgs, "config.settings.auth must be an object of strings {username, password, serveraddress}")
		}
		st.Auth = &a
	}

	raw := m["createOptions"]
	var chunks []int
	for k := range m {
		if c := chunkKey.FindStringSubmatch(k); c != nil {
			n, _ := strconv.Atoi(c[1])
			chunks = append(chunks, n)
		}
	}
	if len(chunks) > 0 {
		joined, err := joinChunks(m, raw, chunks)
		if err != nil {
			return err
		}
		raw = joined
	}
	co, err := parseCreateOptions(raw)
	if err != nil {
		return err
	}
	st.CreateOptions = co
	return nil
}

// joinChunks rebuilds a createOptions string that a deployment manifest split
// over createOptions, createOptions01, createOptions02, ...
func joinChunks(m map[string]json.RawMessage, first json.RawMessage, chunks []int) (json.RawMessage, error) {
	sort.Ints(chunks)
	var b strings.Builder
	var s string
	if err := json.Unmarshal(first, &s); err != nil {
		return nil, fault.New(fault.InvalidArgs, "config.settings.createOptions must be a string when createOptions%02d continues it", chunks[0])
	}
	b.WriteString(s)
	for i, n := range chunks {
		if n != i+1 {
			return nil, fault.New(fault.InvalidArgs, "config.settings.createOptions%02d is missing (chunks must be numbered 01, 02, ... without gaps)", i+1)
		}
		key := fmt.Sprintf("createOptions%02d", n)
		if err := json.Unmarshal(m[key], &s); err != nil {
			return nil, fault.New(fault.InvalidArgs, "config.settings.%s must be a string", key)
		}
		b.WriteString(s)
	}
	return json.Marshal(b.String())
}

// Validate checks a Spec built in code (from configuration, say) the way
// ParseSpec checks a parsed one. Empty ImagePullPolicy and RestartPolicy mean
// their defaults.
func (s *Spec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if s.Type != TypeDocker {
		return fault.New(fault.InvalidArgs, "module %s: type %s is not supported (want \"docker\")", s.Name, Quote(s.Type))
	}
	switch s.ImagePullPolicy {
	case "", PullOnCreate, PullNever:
	default:
		return fault.New(fault.InvalidArgs, "module %s: imagePullPolicy %s is not one of on-create, never", s.Name, Quote(s.ImagePullPolicy))
	}
	switch s.RestartPolicy {
	case "", RestartNever, RestartOnFailure, RestartAlways, restartOnUnhealthy:
	default:
		return fault.New(fault.InvalidArgs, "module %s: restartPolicy %s is not one of never, on-failure, always (or on-unhealthy, read as always)", s.Name, Quote(string(s.RestartPolicy)))
	}
	if _, err := s.ImageRef(); err != nil {
		return err
	}
	if d := s.Config.Settings.Digest; d != "" {
		if _, err := digest.Parse(d); err != nil {
			return fault.Wrap(fault.InvalidArgs, err, "module %s: config.settings.digest %s is not a digest like sha256:<64 hex digits>", s.Name, Quote(d))
		}
	}
	seen := make(map[string]bool, len(s.Config.Env))
	for i, e := range s.Config.Env {
		if err := validateEnvKey(e.Key); err != nil {
			return fault.New(fault.InvalidArgs, "module %s: config.env[%d]: %s", s.Name, i, err)
		}
		if strings.IndexByte(e.Value, 0) >= 0 {
			return fault.New(fault.InvalidArgs, "module %s: config.env %s has a NUL byte in its value", s.Name, Quote(e.Key))
		}
		if seen[e.Key] {
			return fault.New(fault.InvalidArgs, "module %s: config.env repeats %s", s.Name, Quote(e.Key))
		}
		seen[e.Key] = true
	}
	if err := s.Config.Settings.CreateOptions.validate(); err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "module %s: %s", s.Name, fault.Message(err))
	}
	return nil
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidateName accepts module names that are valid container names and safe
// as file names and D-Bus object path elements: a letter or digit, then up to
// 63 letters, digits, '_', '.' or '-'. IoT Hub's "$edgeAgent" is a module
// identity; its container, and so its module, is named "edgeAgent".
func ValidateName(name string) error {
	switch {
	case name == "":
		return fault.New(fault.InvalidArgs, "module name is empty")
	case len(name) > 64:
		return fault.New(fault.InvalidArgs, "module name %s is %d bytes long; at most 64 are allowed", Quote(name), len(name))
	case name[0] == '$':
		return fault.New(fault.InvalidArgs, "module name %s starts with '$': IoT Hub's $-names are identities; name the module %s", Quote(name), Quote(name[1:]))
	case !namePattern.MatchString(name):
		return fault.New(fault.InvalidArgs, "module name %s is invalid: use a letter or digit, then letters, digits, '_', '.' or '-'", Quote(name))
	}
	return nil
}

// ImageRef returns settings.image fully qualified the way containerd and
// Docker name images: "alpine" is "docker.io/library/alpine:latest". Spec keeps
// the image as given, because edgeAgent compares it with what it asked for.
func (s *Spec) ImageRef() (string, error) {
	img := s.Config.Settings.Image
	if img == "" {
		return "", fault.New(fault.InvalidArgs, "module %s: config.settings.image is empty", s.Name)
	}
	for _, r := range img {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return "", fault.New(fault.InvalidArgs, "module %s: config.settings.image %s contains a space or control character", s.Name, Quote(img))
		}
	}
	ref, err := reference.ParseDockerRef(img)
	if err != nil {
		return "", fault.Wrap(fault.InvalidArgs, err, "module %s: config.settings.image %s is not an image reference: %v", s.Name, Quote(img), err)
	}
	return ref.String(), nil
}

func validateEnvKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty variable name")
	case strings.ContainsAny(k, "=\x00"):
		return fmt.Errorf("variable name %s contains '=' or NUL", Quote(k))
	}
	return nil
}

// jsonFault turns a decoding error into a message that names the field and
// not Go's types.
func jsonFault(what string, err error) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fault.Wrap(fault.InvalidArgs, err, "%s is not valid JSON (at byte %d): %v", what, se.Offset, se)
	case errors.As(err, &te):
		field := what
		if te.Field != "" {
			field += " field " + te.Field
		}
		return fault.Wrap(fault.InvalidArgs, err, "%s has the wrong type: found a JSON %s", field, te.Value)
	}
	return fault.Wrap(fault.InvalidArgs, err, "%s is not valid JSON", what)
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func firstByte(raw json.RawMessage) byte {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return 0
	}
	return t[0]
}

// Quote renders caller input for a message: quoted, escaped, and cut short.
func Quote(s string) string {
	const max = 64
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// RestartPolicy says what supervision does when a module's task exits by
// itself. A stop by request is never followed by a restart.
type RestartPolicy string

const (
	RestartNever     RestartPolicy = "never"
	RestartOnFailure RestartPolicy = "on-failure" // restart when the exit code is not 0
	RestartAlways    RestartPolicy = "always"
)

// Valid reports whether p is a known policy.
func (p RestartPolicy) Valid() bool {
	switch p {
	case RestartNever, RestartOnFailure, RestartAlways:
		return true
	}
	return false
}

// AgentModule is the module that manages the others through the
// management API.
const AgentModule = "edgeAgent"
