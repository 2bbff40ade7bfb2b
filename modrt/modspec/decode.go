package modspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/edgev2/edgev2/fault"
)

// createOptions is decoded strictly, by tables: each object (createOptions,
// HostConfig, a mount, its options) lists its known keys and how each is
// read. A key not listed is refused unless its value asks for nothing
// (null, false, 0, "", [] or an object of such: what serializers emit for
// unset fields), with a hint for the ones people commonly write.

// field is one known key of an object decoded into a T: read decodes the
// key's (non-null) value, at names it in errors; a nil read accepts and
// ignores the key.
type field[T any] struct {
	key  string
	read func(dst *T, v json.RawMessage, at string) error
}

// decodeObject decodes the JSON object raw (at names it) into dst by the
// table fields, key by key in sorted order, so the first error is stable.
func decodeObject[T any](raw json.RawMessage, at string, fields []field[T], dst *T) error {
	m, err := object(raw, at)
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(m) {
		v := m[k]
		if isNull(v) {
			continue
		}
		if err := decodeKey(fields, dst, k, v, at+"."+k); err != nil {
			return err
		}
	}
	return nil
}

func decodeKey[T any](fields []field[T], dst *T, k string, v json.RawMessage, at string) error {
	for _, f := range fields {
		if f.key == k {
			if f.read == nil {
				return nil
			}
			return f.read(dst, v, at)
		}
	}
	known := make([]string, len(fields))
	for i, f := range fields {
		known[i] = f.key
	}
	return unsupported(at, k, v, known)
}

// as reads a value with encoding/json into the field get points at; want
// says what the value must be ("a string").
func as[T, V any](get func(*T) *V, want string) func(*T, json.RawMessage, string) error {
	return func(dst *T, v json.RawMessage, at string) error { return decode(v, get(dst), at, want) }
}

// strs reads Docker's StrSlice (a string or a list of strings).
func strs[T any](get func(*T) *[]string) func(*T, json.RawMessage, string) error {
	return func(dst *T, v json.RawMessage, at string) (err error) {
		*get(dst), err = strSlice(v, at)
		return err
	}
}

// raw keeps an object as written (compacted), for fields read later.
func raw[T any](get func(*T) *json.RawMessage) func(*T, json.RawMessage, string) error {
	return func(dst *T, v json.RawMessage, at string) error {
		*get(dst) = compact(v)
		if firstByte(v) != '{' {
			return fault.New(fault.InvalidArgs, "%s must be an object", at)
		}
		return nil
	}
}

// nested decodes an object by its own table into the struct get returns,
// allocating it first when get allocates.
func nested[T, V any](get func(*T) *V, fields []field[V]) func(*T, json.RawMessage, string) error {
	return func(dst *T, v json.RawMessage, at string) error {
		m, err := object(v, at)
		if err != nil {
			return err
		}
		d := get(dst)
		for _, k := range sortedKeys(m) {
			if err := decodeKey(fields, d, k, m[k], at+"."+k); err != nil {
				return err
			}
		}
		return nil
	}
}

var createOptionsFields = []field[CreateOptions]{
	{"Hostname", as(func(c *CreateOptions) *string { return &c.Hostname }, "a string")},
	{"User", as(func(c *CreateOptions) *string { return &c.User }, "a string")},
	{"WorkingDir", as(func(c *CreateOptions) *string { return &c.WorkingDir }, "a string")},
	{"Env", as(func(c *CreateOptions) *[]string { return &c.Env }, "a list of \"KEY=value\" strings")},
	{"Cmd", strs(func(c *CreateOptions) *[]string { return &c.Cmd })},
	{"Entrypoint", strs(func(c *CreateOptions) *[]string { return &c.Entrypoint })},
	{"Labels", as(func(c *CreateOptions) *map[string]string { return &c.Labels }, "an object of strings")},
	{"ExposedPorts", func(c *CreateOptions, v json.RawMessage, at string) error {
		var ports map[string]json.RawMessage
		if err := decode(v, &ports, at, "an object like {\"8080/tcp\": {}}"); err != nil || len(ports) == 0 {
			return err
		}
		c.ExposedPorts = make(map[string]struct{}, len(ports))
		for p := range ports {
			c.ExposedPorts[p] = struct{}{}
		}
		return nil
	}},
	{"NetworkingConfig", raw(func(c *CreateOptions) *json.RawMessage { return &c.NetworkingConfig })},
	{"HostConfig", func(c *CreateOptions, v json.RawMessage, at string) error {
		return decodeObject(v, at, hostConfigFields, &c.HostConfig)
	}},
	// Attach*: the runtime captures output itself. Image: settings.image
	// names the image; Docker clients repeat it here.
	{"AttachStdin", nil}, {"AttachStdout", nil}, {"AttachStderr", nil}, {"Image", nil},
}

var hostConfigFields = []field[HostConfig]{
	{"Binds", as(func(h *HostConfig) *[]string { return &h.Binds }, "a list of \"source:destination[:options]\" strings")},
	{"Mounts", func(h *HostConfig, v json.RawMessage, at string) error {
		var list []json.RawMessage
		if err := decode(v, &list, at, "a list of objects"); err != nil {
			return err
		}
		for i, mv := range list {
			var mnt Mount
			if err := decodeObject(mv, fmt.Sprintf("%s[%d]", at, i), mountFields, &mnt); err != nil {
				return err
			}
			h.Mounts = append(h.Mounts, mnt)
		}
		return nil
	}},
	{"CapAdd", strs(func(h *HostConfig) *[]string { return &h.CapAdd })},
	{"CapDrop", strs(func(h *HostConfig) *[]string { return &h.CapDrop })},
	{"Privileged", as(func(h *HostConfig) *bool { return &h.Privileged }, "true or false")},
	{"Memory", as(func(h *HostConfig) *int64 { return &h.Memory }, "a whole number of bytes")},
	{"NanoCpus", as(func(h *HostConfig) *int64 { return &h.NanoCpus }, "a whole number of billionths of a CPU")},
	{"PidsLimit", as(func(h *HostConfig) *int64 { return &h.PidsLimit }, "a whole number of processes and threads")},
	{"NetworkMode", as(func(h *HostConfig) *string { return &h.NetworkMode }, "a string")},
	{"PidMode", as(func(h *HostConfig) *string { return &h.PidMode }, "a string")},
	{"ReadonlyRootfs", as(func(h *HostConfig) *bool { return &h.ReadonlyRootfs }, "true or false")},
	{"LogConfig", nested(func(h *HostConfig) *LogConfig { return &h.LogConfig }, []field[LogConfig]{
		{"Type", as(func(l *LogConfig) *string { return &l.Type }, "a string")},
		{"Config", as(func(l *LogConfig) *map[string]string { return &l.Config }, "an object of strings")},
	})},
	{"PortBindings", raw(func(h *HostConfig) *json.RawMessage { return &h.PortBindings })},
}

var mountFields = []field[Mount]{
	{"Type", as(func(m *Mount) *string { return &m.Type }, "a string")},
	{"Source", as(func(m *Mount) *string { return &m.Source }, "a string")},
	{"Target", as(func(m *Mount) *string { return &m.Target }, "a string")},
	{"ReadOnly", as(func(m *Mount) *bool { return &m.ReadOnly }, "true or false")},
	// Docker Desktop's macOS tuning; meaningless on Linux, as in Docker
	// (checked to be a string, then dropped).
	{"Consistency", func(_ *Mount, v json.RawMessage, at string) error {
		var c string
		return decode(v, &c, at, "a string")
	}},
	{"BindOptions", nested(func(m *Mount) *BindOptions { m.BindOptions = &BindOptions{}; return m.BindOptions }, []field[BindOptions]{
		{"Propagation", as(func(b *BindOptions) *string { return &b.Propagation }, "a string")},
		{"NonRecursive", as(func(b *BindOptions) *bool { return &b.NonRecursive }, "true or false")},
	})},
	{"TmpfsOptions", nested(func(m *Mount) *TmpfsOptions { m.TmpfsOptions = &TmpfsOptions{}; return m.TmpfsOptions }, []field[TmpfsOptions]{
		{"SizeBytes", as(func(t *TmpfsOptions) *int64 { return &t.SizeBytes }, "a whole number of bytes")},
		{"Mode", as(func(t *TmpfsOptions) *uint32 { return &t.Mode }, "a file mode number")},
	})},
}

// parseCreateOptions decodes settings.createOptions: an object, a string
// holding one, or nothing.
func parseCreateOptions(raw json.RawMessage) (CreateOptions, error) {
	var co CreateOptions
	if isNull(raw) {
		return co, nil
	}
	if firstByte(raw) == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return co, jsonFault("config.settings.createOptions", err)
		}
		if strings.TrimSpace(str) == "" {
			return co, nil
		}
		raw = json.RawMessage(str)
	}
	if firstByte(raw) != '{' {
		return co, fault.New(fault.InvalidArgs, "config.settings.createOptions must be a JSON object or a string holding one")
	}
	if err := decodeObject(raw, "createOptions", createOptionsFields, &co); err != nil {
		return co, err
	}
	co.normalise()
	return co, nil
}

// hints say what to do instead for fields people commonly write.
var hints = map[string]string{
	"Devices":       "device access is not supported yet",
	"RestartPolicy": "use the module's restartPolicy; the runtime supervises modules",
	"Volumes":       "named and anonymous volumes are not supported yet; bind a host directory",
	"Sysctls":       "sysctls are not supported",
	"SecurityOpt":   "security options are set by the runtime",
	"ExtraHosts":    "modules resolve each other by name through the /etc/hosts the runtime keeps",
	"Tty":           "modules run without a terminal",
	"StopSignal":    "modules are stopped with SIGTERM, then SIGKILL",
}

// unsupported rejects key unless its value asks for nothing.
func unsupported(field, key string, v json.RawMessage, known []string) error {
	if zeroJSON(v) {
		return nil
	}
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fault.New(fault.InvalidArgs, "%s is not supported: field names are case-sensitive; did you mean %s?", field, k)
		}
	}
	if h, ok := hints[key]; ok {
		return fault.New(fault.InvalidArgs, "%s is not supported: %s", field, h)
	}
	return fault.New(fault.InvalidArgs, "%s is not supported by edgev2; remove it (see docs/modules.md)", field)
}

// zeroJSON reports whether v is null, false, 0, "", [] or an object of such.
func zeroJSON(v json.RawMessage) bool {
	if isNull(v) {
		return true
	}
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	var x any
	if d.Decode(&x) != nil {
		return false
	}
	return zeroValue(x)
}

func zeroValue(x any) bool {
	switch t := x.(type) {
	case nil:
		return true
	case bool:
		return !t
	case string:
		return t == ""
	case json.Number:
		f, err := t.Float64()
		return err == nil && f == 0
	case []any:
		return len(t) == 0
	case map[string]any:
		for _, e := range t {
			if !zeroValue(e) {
				return false
			}
		}
		return true
	}
	return false
}

func object(raw json.RawMessage, at string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if firstByte(raw) != '{' || json.Unmarshal(raw, &m) != nil {
		return nil, fault.New(fault.InvalidArgs, "%s must be a JSON object", at)
	}
	return m, nil
}

// compact keeps v as json.Marshal will write it, so specs survive round trips.
func compact(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return nil
	}
	return b.Bytes()
}

func decode(raw json.RawMessage, dst any, field, want string) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "%s must be %s", field, want)
	}
	return nil
}

// strSlice reads Docker's StrSlice: a string or a list of strings.
func strSlice(raw json.RawMessage, field string) ([]string, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "%s must be a string or a list of strings", field)
	}
	if list == nil {
		list = []string{}
	}
	return list, nil
}
