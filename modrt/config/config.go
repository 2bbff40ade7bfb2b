// Package config is modrtd's configuration (/etc/edgev2/modrtd.toml): its
// type, parser and checks. It imports no runtime code, so edgectl and the
// super-config compiler use it without linking containerd.
package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	cfgfile "github.com/edgev2/edgev2/internal/config"
	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// QuickstartEdgeCA names the key (in Keys) and certificate (in
// Certificates) of the edge CA modrtd makes when none is configured, as
// aziot-edged's quickstart CA does. certd signs with that key for modrtd,
// so the services' compiled grants name it.
const QuickstartEdgeCA = "edgev2-edge-ca"

// Config is modrtd's configuration file (/etc/edgev2/modrtd.toml). It is
// also what edgectl config apply writes: unset keys are left out, and
// fields are in the order the compiled files show them.
type Config struct {
	Homedir    string `toml:"homedir"`
	Containerd string `toml:"containerd_address,omitempty"` // default /run/containerd/containerd.sock
	Namespace  string `toml:"namespace,omitempty"`          // default edgev2
	// MgmtSocket is the management API's Unix socket (edgeAgent, tools).
	MgmtSocket string `toml:"mgmt_socket,omitempty"` // default <homedir>/mgmt/mgmt.sock; its directory is bound into the agent
	// TrustBundle is the Certificates id of the CAs the workload API's
	// trust-bundle endpoint serves to modules.
	TrustBundle string `toml:"trust_bundle,omitempty"`
	// EdgeCACert and EdgeCAKey name the edge CA (in Certificates and Keys)
	// that issues modules' server certificates; its certificate is added to
	// the trust bundle. Empty: no server certificates.
	EdgeCACert string `toml:"edge_ca_cert,omitempty"`
	EdgeCAKey  string `toml:"edge_ca_key,omitempty"`
	// EdgeCALifetimeDays is the lifetime of the quickstart edge CA modrtd
	// makes (key and certificate "edgev2-edge-ca") when edge_ca_cert is
	// not set; it is renewed, with the same key, after 80% of it.
	EdgeCALifetimeDays int `toml:"edge_ca_lifetime_days,omitempty"`
	// ManifestTrustBundle is the Certificates id the workload API's
	// manifest-trust-bundle endpoint serves (empty: an empty bundle).
	ManifestTrustBundle string `toml:"manifest_trust_bundle,omitempty"`
	// WorkloadEncryptionKey is the Keys id of the master key (usage derive,
	// made if missing) each module's workload encrypt/decrypt key is derived
	// from inside the Keys service.
	WorkloadEncryptionKey string `toml:"workload_encryption_key,omitempty"`
	// ImageGC removes images no module has used for a while, on a schedule.
	ImageGC ImageGCConfig `toml:"image_garbage_collection,omitempty"`
	// RegistryCAFiles are PEM files of CAs registries' TLS certificates may
	// chain to (besides the system roots).
	RegistryCAFiles []string     `toml:"registry_ca_files,omitempty"`
	Policy          PolicyConfig `toml:"policy,omitempty"`
	// Agent is the edgeAgent module, created and kept running as
	// aziot-edged does; Modules are a local deployment kept running without
	// any cloud agent.
	Agent   *LocalModule  `toml:"agent,omitempty"`
	Modules []LocalModule `toml:"modules,omitempty"`
	// Network is the default network modules join (docs/modules.md, Network).
	Network NetworkConfig `toml:"network,omitempty"`
	// Workload holds what the workload API grants modules beyond their own
	// name (see servernames.go).
	Workload WorkloadConfig `toml:"workload,omitempty"`
}

// ImageGCConfig is aziot-edged's [image_garbage_collection]: every
// cleanup_recurrence, at cleanup_time (local HH:MM), images unused for
// image_age_cleanup_threshold are removed.
type ImageGCConfig struct {
	Enabled    *bool  `toml:"enabled,omitempty"`                     // default true
	Recurrence string `toml:"cleanup_recurrence,omitempty"`          // default "1d"
	Threshold  string `toml:"image_age_cleanup_threshold,omitempty"` // default "7d"
	Time       string `toml:"cleanup_time,omitempty"`                // default "00:00"

	// Parsed by ParseConfig.
	Every     time.Duration `toml:"-"`
	UnusedFor time.Duration `toml:"-"`
	AtMinute  int           `toml:"-"` // minutes after local midnight
}

// LocalModule is a module the runtime keeps by itself.
type LocalModule struct {
	Name string `toml:"name"`
	Spec string `toml:"spec,multiline"` // ModuleSpec JSON
	// RegistryPasswordCredential names the systemd credential holding the
	// registry password of the spec's config.settings.auth (what `edgectl
	// config apply` writes instead of the password); ReadCredentials puts
	// it into Spec at start.
	RegistryPasswordCredential string `toml:"registry_password_credential,omitempty"`
}

// PolicyConfig is the module policy, an allowlist: what module specs may
// ask for beyond the defaults (Docker's default capabilities, no devices,
// binds only of the module's own volume directory). See docs/modules.md.
type PolicyConfig struct {
	// ReadOnlyBinds are host paths any module may bind read-only (and
	// anything below them).
	ReadOnlyBinds []string `toml:"read_only_binds,omitempty"`
	// Allow are the opt-ins, each for the modules it names.
	Allow []Grant `toml:"allow,omitempty"`

	// Replaced by the allowlist; set, they stop modrtd with a fix.
	ForbiddenBindPrefixes []string `toml:"forbidden_bind_prefixes,omitempty"`
	AllowPrivileged       bool     `toml:"allow_privileged,omitempty"`
	// AllowHostNetwork names the modules that may use NetworkMode "host".
	AllowHostNetwork []string `toml:"allow_host_network,omitempty"`
	// DefaultPidsLimit is how many processes and threads a module may have
	// when its createOptions set no HostConfig.PidsLimit (0: the default,
	// DefaultPidsLimit; -1: none). MaxPidsLimit is the most a deployment may
	// ask for (0: DefaultPidsLimit's value; -1: any, and none).
	DefaultPidsLimit int64 `toml:"default_pids_limit,omitempty"`
	MaxPidsLimit     int64 `toml:"max_pids_limit,omitempty"`
	// MaxLogSize is the most disk a deployment may ask a module's log to
	// take, LogConfig's max-size times max-file ("1g", the default;
	// "-1": any).
	MaxLogSize string `toml:"max_log_size,omitempty"`
}

// DefaultMaxLogSize is max_log_size's default: a hundred times a module's
// default log (3 files of 10 MiB), ten times Microsoft's recommended
// setting for edgeHub (10 files of 10 MiB).
const DefaultMaxLogSize = 1 << 30

// DefaultPidsLimit is a module's pids limit when neither the policy nor
// its createOptions set one: far above what a module needs (edgeHub runs
// about a hundred threads), far below the host's pid space (pid_max is
// 32768 on many devices), so one module's fork bomb or thread leak does
// not stop every other service from starting a process.
const DefaultPidsLimit = 1024

// Grant is one opt-in ([[policy.allow]]): it applies to a module whose
// name is in Modules (when set) and whose image matches Images (when
// set); at least one of the two is set.
type Grant struct {
	Modules []string `toml:"modules,omitempty"`
	// Images are image references as the spec names them; a trailing "*"
	// matches any suffix ("myacr.azurecr.io/hub:*").
	Images []string `toml:"images,omitempty"`
	// CapAdd are capabilities beyond Docker's default set the module may
	// add ("NET_ADMIN" or "CAP_NET_ADMIN"; "ALL" for every one).
	CapAdd []string `toml:"cap_add,omitempty"`
	// Binds are host paths the module may bind read-write (and anything
	// below them); ReadOnlyBinds read-only.
	Binds         []string `toml:"binds,omitempty"`
	ReadOnlyBinds []string `toml:"read_only_binds,omitempty"`
	Privileged    bool     `toml:"privileged,omitempty"` // HostConfig.Privileged: every capability and device
	HostPID       bool     `toml:"host_pid,omitempty"`   // HostConfig.PidMode "host"
}

// ConfigError names the file, key and fix of a configuration mistake.
type ConfigError = cfgfile.Error

// NeverBind are host paths no module may bind, or bind a parent of,
// whatever the policy lists: edgev2's own state and configuration, the
// system bus, containerd and the kernel's process and system views.
// modrtd adds its homedir (but for the modules' volumes) and containerd's
// socket directory.
var NeverBind = []string{"/etc/edgev2", "/var/lib/edgev2", "/run/edgev2", "/run/dbus", "/var/run/dbus",
	"/run/containerd", "/var/run/containerd", "/var/lib/containerd", "/etc/containerd", "/proc", "/sys/fs/cgroup"}

// LoadConfig reads and validates a modrtd config file.
func LoadConfig(path string) (*Config, error) { return cfgfile.Load(path, ParseConfig) }

// ParseConfig parses and validates modrtd config text.
func ParseConfig(path string, data []byte) (*Config, error) {
	var c Config
	if err := cfgfile.Decode(path, data, &c, "docs/modules.md"); err != nil {
		return nil, err
	}
	if c.Homedir == "" || !strings.HasPrefix(c.Homedir, "/") {
		return nil, &ConfigError{File: path, Key: "homedir", Problem: "not an absolute path", Fix: `set homedir = "/var/lib/edgev2/modrtd"`}
	}
	if c.Containerd == "" {
		c.Containerd = "/run/containerd/containerd.sock"
	}
	if c.MgmtSocket == "" {
		c.MgmtSocket = c.Homedir + "/mgmt/mgmt.sock"
	}
	if c.Namespace == "" {
		c.Namespace = "edgev2"
	}
	if err := c.Policy.validate(path); err != nil {
		return nil, err
	}
	if c.Agent != nil {
		if c.Agent.Name == "" {
			c.Agent.Name = "edgeAgent"
		}
		c.Modules = append([]LocalModule{*c.Agent}, c.Modules...)
	}
	seen := map[string]bool{}
	for i, m := range c.Modules {
		key := fmt.Sprintf("modules[%d]", i)
		if err := modspec.ValidateName(m.Name); err != nil {
			return nil, &ConfigError{File: path, Key: key + ".name", Problem: err.Error(), Fix: "use [A-Za-z0-9][A-Za-z0-9_.-]*"}
		}
		if seen[m.Name] {
			return nil, &ConfigError{File: path, Key: key + ".name", Problem: fmt.Sprintf("module %q is listed twice", m.Name), Fix: "keep one"}
		}
		seen[m.Name] = true
		if _, err := modspec.ParseSpec([]byte(m.Spec)); err != nil {
			return nil, &ConfigError{File: path, Key: key + ".spec", Problem: err.Error(), Fix: "write a ModuleSpec JSON (docs/modules.md)"}
		}
		if cr := m.RegistryPasswordCredential; cr != "" {
			if err := credential.ValidName(cr); err != nil {
				return nil, &ConfigError{File: path, Key: key + ".registry_password_credential", Problem: err.Error(), Fix: `use the name of the unit's LoadCredentialEncrypted= credential, e.g. "edgev2.modrtd.<module>.registry-password" (docs/config.md)`}
			}
		}
	}
	if c.EdgeCALifetimeDays == 0 {
		c.EdgeCALifetimeDays = 90
	}
	if c.EdgeCALifetimeDays < 1 || c.EdgeCALifetimeDays > 3650 {
		return nil, &ConfigError{File: path, Key: "edge_ca_lifetime_days", Problem: fmt.Sprintf("%d is out of range", c.EdgeCALifetimeDays), Fix: "use 1 to 3650 days"}
	}
	if (c.EdgeCACert == "") != (c.EdgeCAKey == "") {
		return nil, &ConfigError{File: path, Key: "edge_ca_cert", Problem: "edge_ca_cert and edge_ca_key must be set together", Fix: "set both (a configured edge CA) or neither (the quickstart edge CA)"}
	}
	if c.WorkloadEncryptionKey == "" {
		c.WorkloadEncryptionKey = "edgev2-workload-master"
	}
	if err := c.ImageGC.parse(path); err != nil {
		return nil, err
	}
	if err := c.Workload.validate(path); err != nil {
		return nil, err
	}
	if err := c.Network.SetDefaults(path); err != nil {
		return nil, err
	}
	for i, m := range c.Policy.AllowHostNetwork {
		if err := modspec.ValidateName(m); err != nil {
			return nil, &ConfigError{File: path, Key: fmt.Sprintf("policy.allow_host_network[%d]", i), Problem: err.Error(), Fix: "list module names"}
		}
	}
	return &c, nil
}

// ValidatePolicy checks the [policy] table (edgectl config apply runs it
// on the super-config's [runtime.policy]).
func (c *Config) ValidatePolicy(path string) error { return c.Policy.validate(path) }

func (pc *PolicyConfig) validate(path string) error {
	if pc.ForbiddenBindPrefixes != nil || pc.AllowPrivileged {
		return &ConfigError{File: path, Key: "policy.forbidden_bind_prefixes", Problem: "the module policy is now an allowlist; forbidden_bind_prefixes and allow_privileged are gone",
			Fix: "remove them; allow what modules need per module in [[policy.allow]] (docs/modules.md)"}
	}
	paths := func(key string, ps []string) error {
		for i, p := range ps {
			if err := modspec.CheckPath(p); err != nil {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s[%d]", key, i), Problem: fmt.Sprintf("%q: %v", p, err), Fix: "use an absolute path without \"..\""}
			}
			if filepath.Clean(p) == "/" {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s[%d]", key, i), Problem: "\"/\" would expose the whole host", Fix: "list the directories modules need"}
			}
		}
		return nil
	}
	if err := paths("policy.read_only_binds", pc.ReadOnlyBinds); err != nil {
		return err
	}
	if err := pc.validatePids(path); err != nil {
		return err
	}
	if _, err := pc.LogLimit(); err != nil {
		return &ConfigError{File: path, Key: "policy.max_log_size", Problem: fmt.Sprintf("%q is not a size", pc.MaxLogSize), Fix: `use a size like "1g" or "500m" (at least "30m", a module's default log), or "-1" for no maximum`}
	}
	for i, g := range pc.Allow {
		key := fmt.Sprintf("policy.allow[%d]", i)
		if len(g.Modules) == 0 && len(g.Images) == 0 {
			return &ConfigError{File: path, Key: key, Problem: "names neither modules nor images", Fix: `say whom it is for: modules = ["name"] and/or images = ["registry/image:tag"]`}
		}
		for j, m := range g.Modules {
			if err := modspec.ValidateName(m); err != nil {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s.modules[%d]", key, j), Problem: err.Error(), Fix: "use module names"}
			}
		}
		for j, im := range g.Images {
			pre, wild := strings.CutSuffix(im, "*")
			if pre == "" || strings.Contains(pre, "*") {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s.images[%d]", key, j), Problem: fmt.Sprintf("%q is not an image reference (a \"*\" may only end it)", im), Fix: `use "registry/image:tag" or "registry/image:*"`}
			}
			if wild && imagePrefix(pre) == "" {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s.images[%d]", key, j), Problem: fmt.Sprintf("%q would match other repositories or registries (the \"*\" must follow \":\" or \"/\")", im), Fix: `use "registry/image:*" (any tag of one image) or "registry/path/*" (every image below a path)`}
			}
		}
		for j, c := range g.CapAdd {
			if n := modspec.NormCap(c); n != "ALL" && !slices.Contains(modspec.KnownCaps, n) {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s.cap_add[%d]", key, j), Problem: fmt.Sprintf("%q is not a Linux capability", c), Fix: `use names like "NET_ADMIN"`}
			}
		}
		if err := paths(key+".binds", g.Binds); err != nil {
			return err
		}
		if err := paths(key+".read_only_binds", g.ReadOnlyBinds); err != nil {
			return err
		}
	}
	return nil
}

// PidsLimits are the default and the highest pids limit of a module,
// resolved from the configuration; 0 means no limit.
func (pc *PolicyConfig) PidsLimits() (def, max int64) {
	def = pc.DefaultPidsLimit
	if def == 0 {
		def = DefaultPidsLimit
	}
	max = pc.MaxPidsLimit
	if max == 0 {
		max = def
	}
	return max0(def), max0(max)
}

func max0(n int64) int64 {
	if n < 0 {
		return 0
	}
	return n
}

// LogLimit is the most disk a deployment may ask one module's log to
// take, resolved from max_log_size; 0 means no maximum.
func (pc *PolicyConfig) LogLimit() (int64, error) {
	switch pc.MaxLogSize {
	case "":
		return DefaultMaxLogSize, nil
	case "-1":
		return 0, nil
	}
	n, err := modspec.ParseSize(pc.MaxLogSize)
	if err == nil && n < modspec.DefaultLogMaxBytes*modspec.DefaultLogFiles {
		err = fmt.Errorf("below a module's default log")
	}
	return n, err
}

func (pc *PolicyConfig) validatePids(path string) error {
	for _, k := range []struct {
		key string
		n   int64
	}{{"policy.default_pids_limit", pc.DefaultPidsLimit}, {"policy.max_pids_limit", pc.MaxPidsLimit}} {
		if k.n < -1 || (k.n > 0 && k.n < 16) || k.n > 1<<22 {
			return &ConfigError{File: path, Key: k.key, Problem: fmt.Sprintf("%d is not a pids limit", k.n), Fix: fmt.Sprintf("use 16 to 4194304 processes and threads (default %d), or -1 for none", DefaultPidsLimit)}
		}
	}
	def, max := pc.PidsLimits()
	if max > 0 && def == 0 {
		return &ConfigError{File: path, Key: "policy.max_pids_limit", Problem: "default_pids_limit -1 (no limit) is above any maximum", Fix: "set max_pids_limit to -1 too, or give default_pids_limit a number"}
	}
	if max > 0 && def > max {
		return &ConfigError{File: path, Key: "policy.max_pids_limit", Problem: fmt.Sprintf("%d is below default_pids_limit (%d)", pc.MaxPidsLimit, pc.DefaultPidsLimit), Fix: "raise max_pids_limit to at least default_pids_limit, or set it to -1 (no maximum)"}
	}
	return nil
}

// GCEnabled reports whether scheduled image garbage collection is on.
func (g ImageGCConfig) GCEnabled() bool { return g.Enabled == nil || *g.Enabled }

func (g *ImageGCConfig) parse(path string) error {
	var err error
	if g.Every, err = parseDays(g.Recurrence, 24*time.Hour); err != nil || g.Every < time.Hour {
		return &ConfigError{File: path, Key: "image_garbage_collection.cleanup_recurrence", Problem: fmt.Sprintf("%q is not a recurrence of at least an hour", g.Recurrence), Fix: `use a duration like "1d" or "12h"`}
	}
	if g.UnusedFor, err = parseDays(g.Threshold, 7*24*time.Hour); err != nil || g.UnusedFor < time.Minute {
		return &ConfigError{File: path, Key: "image_garbage_collection.image_age_cleanup_threshold", Problem: fmt.Sprintf("%q is not an age of at least a minute", g.Threshold), Fix: `use a duration like "7d"`}
	}
	at := g.Time
	if at == "" {
		at = "00:00"
	}
	hh, mm, ok := strings.Cut(at, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(hh) != 2 || len(mm) != 2 || h > 23 || m > 59 || h < 0 || m < 0 {
		return &ConfigError{File: path, Key: "image_garbage_collection.cleanup_time", Problem: fmt.Sprintf("%q is not a time of day", g.Time), Fix: `use 24-hour "HH:MM", e.g. "03:30"`}
	}
	g.AtMinute = h*60 + m
	return nil
}

// parseDays reads Go durations plus a "d" (day) unit, as aziot's config does.
func parseDays(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("bad days %q", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// ReadCredentials puts the registry passwords the configuration names as
// systemd credentials ($CREDENTIALS_DIRECTORY) into the modules' specs;
// modrtd calls it once at start. Errors name the module and the
// credential, never the password.
func (c *Config) ReadCredentials() error {
	for i, m := range c.Modules {
		if m.RegistryPasswordCredential == "" {
			continue
		}
		pw, err := credential.ReadString(m.RegistryPasswordCredential)
		if err != nil {
			return fmt.Errorf("module %q registry_password_credential: %w", m.Name, err)
		}
		spec, err := modspec.SetRegistryPassword([]byte(m.Spec), pw)
		if err != nil {
			return fmt.Errorf("module %q: %w", m.Name, err)
		}
		c.Modules[i].Spec = string(spec)
	}
	return nil
}
