package hub

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/edgev2/edgev2/internal/labcloud/labconfig"
)

// Config is the [hub] table of edgev2-labcloud's configuration file.
type Config struct {
	// Hostname is the IoT Hub host name devices are told (DPS assignedHub)
	// and that SAS resources name: a bare DNS name reached on port 443, as
	// every real hub is ("myhub.azure-devices.net"); never "host:port",
	// which the Azure SDKs would put whole into the TLS host. Default: the
	// name edgev2-labcloud listens at (--hub-hostname).
	Hostname string `toml:"hostname"`
	// ServicePolicyName and ServicePolicyKey are the shared access policy
	// with every right (IoT Hub's iothubowner). Default name "iothubowner";
	// without a key the service API is closed.
	ServicePolicyName string `toml:"service_policy_name"`
	ServicePolicyKey  string `toml:"service_policy_key"`
	// Devices are registered at start (manual provisioning); devices DPS
	// creates are added at run time.
	Devices []DeviceConfig `toml:"devices"`
}

// DeviceConfig is one [[hub.devices]] entry: symmetric keys or X.509
// thumbprints (SHA-1 or SHA-256, hex).
type DeviceConfig struct {
	DeviceID            string `toml:"device_id"`
	PrimaryKey          string `toml:"primary_key"`
	SecondaryKey        string `toml:"secondary_key"`
	PrimaryThumbprint   string `toml:"primary_thumbprint"`
	SecondaryThumbprint string `toml:"secondary_thumbprint"`
	// EdgeEnabled sets capabilities.iotEdge.
	EdgeEnabled bool `toml:"edge_enabled"`
}

// ConfigError is a configuration mistake in the [hub] table.
type ConfigError = labconfig.Error

// DefaultServicePolicyName is IoT Hub's all-rights policy.
const DefaultServicePolicyName = "iothubowner"

func (c Config) withDefaults() Config {
	if c.ServicePolicyName == "" {
		c.ServicePolicyName = DefaultServicePolicyName
	}
	return c
}

// hostnamePattern is a DNS name (RFC 1123 labels; '_' tolerated as
// resolvers do): what IoT Hub host names are. No port, no IP literal.
var hostnamePattern = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$`)

// CheckHostname reports why h is not an IoT Hub host name.
func CheckHostname(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("empty host name")
	case strings.Contains(h, ":"):
		return fmt.Errorf("%q carries a port (or is an IPv6 address): IoT Hub host names are bare names served on port 443", h)
	case len(h) > 253 || !hostnamePattern.MatchString(h):
		return fmt.Errorf("%q is not a DNS host name", h)
	}
	return nil
}

// idPattern is IoT Hub's rule for device and module ids: up to 128
// ASCII letters, digits and - . + % _ # * ? ! ( ) , : = @ $ '.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$`)

// ValidID reports whether id is a valid IoT Hub device or module id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

var thumbprintPattern = regexp.MustCompile(`^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$`)

// Validate reports the first mistake in c.
func (c Config) Validate() error {
	if c.Hostname != "" {
		if err := CheckHostname(c.Hostname); err != nil {
			return &ConfigError{Table: "hub", Key: "hostname", Problem: err.Error(), Fix: `use a bare name like "myhub.example" that resolves to the listener, which serves on port 443`}
		}
	}
	if c.ServicePolicyKey != "" {
		if _, err := DecodeKey(c.ServicePolicyKey); err != nil {
			return &ConfigError{Table: "hub", Key: "service_policy_key", Problem: err.Error(), Fix: "use `openssl rand -base64 32`"}
		}
	}
	seen := map[string]bool{}
	for i, d := range c.Devices {
		key := fmt.Sprintf("devices[%d]", i)
		if !ValidID(d.DeviceID) {
			return &ConfigError{Table: "hub", Key: key + ".device_id", Problem: fmt.Sprintf("%q is not an IoT Hub device id", d.DeviceID), Fix: "use up to 128 letters, digits and -.+%_#*?!(),:=@$'"}
		}
		if seen[d.DeviceID] {
			return &ConfigError{Table: "hub", Key: key + ".device_id", Problem: fmt.Sprintf("%q is listed twice", d.DeviceID), Fix: "keep one entry per device"}
		}
		seen[d.DeviceID] = true
		hasKeys := d.PrimaryKey != "" || d.SecondaryKey != ""
		hasThumbs := d.PrimaryThumbprint != "" || d.SecondaryThumbprint != ""
		if hasKeys == hasThumbs {
			return &ConfigError{Table: "hub", Key: key, Problem: "needs either primary_key/secondary_key or primary_thumbprint/secondary_thumbprint", Fix: "set one kind of credential"}
		}
		for name, v := range map[string]string{"primary_key": d.PrimaryKey, "secondary_key": d.SecondaryKey} {
			if v == "" {
				continue
			}
			if _, err := DecodeKey(v); err != nil {
				return &ConfigError{Table: "hub", Key: key + "." + name, Problem: err.Error(), Fix: "use `openssl rand -base64 32`"}
			}
		}
		for name, v := range map[string]string{"primary_thumbprint": d.PrimaryThumbprint, "secondary_thumbprint": d.SecondaryThumbprint} {
			if v != "" && !thumbprintPattern.MatchString(strings.ReplaceAll(v, ":", "")) {
				return &ConfigError{Table: "hub", Key: key + "." + name, Problem: "not a SHA-1 or SHA-256 hex thumbprint", Fix: "use `openssl x509 -noout -fingerprint -sha256`"}
			}
		}
	}
	return nil
}

// authentication turns a configured device's credentials into the wire shape.
func (d DeviceConfig) authentication() Authentication {
	if d.PrimaryThumbprint != "" || d.SecondaryThumbprint != "" {
		return Authentication{Type: AuthSelfSigned, X509Thumbprint: &X509Thumbprint{
			PrimaryThumbprint:   normThumb(d.PrimaryThumbprint),
			SecondaryThumbprint: normThumb(d.SecondaryThumbprint),
		}}
	}
	return Authentication{Type: AuthSAS, SymmetricKey: &SymmetricKey{PrimaryKey: d.PrimaryKey, SecondaryKey: d.SecondaryKey}}
}

func normThumb(s string) string { return strings.ToUpper(strings.ReplaceAll(s, ":", "")) }
