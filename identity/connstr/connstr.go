// Package connstr parses the IoT Hub device and module connection strings
// that manual provisioning is configured with.
package connstr

import (
	"encoding/base64"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/hubname"
)

// ConnectionString is a parsed IoT Hub device or module connection string.
type ConnectionString struct {
	HostName        string // IoT Hub host name, e.g. "myhub.azure-devices.net"
	DeviceID        string
	ModuleID        string // "" for a device connection string
	GatewayHostName string // parent edge device to connect through; "" for direct
	// SharedAccessKey is the decoded symmetric key; nil with x509=true.
	SharedAccessKey []byte
	// SharedAccessKeyName names a hub-level policy; device strings have none.
	SharedAccessKeyName string
	X509                bool // x509=true: authenticate with a client certificate
}

// maxLen bounds the input; real connection strings are a few hundred bytes.
const maxLen = 4096

// Keys as the Azure IoT SDKs spell them (they match case-sensitively).
const (
	keyHostName        = "HostName"
	keyDeviceID        = "DeviceId"
	keyModuleID        = "ModuleId"
	keyGatewayHostName = "GatewayHostName"
	keySharedAccessKey = "SharedAccessKey"
	keyKeyName         = "SharedAccessKeyName"
	keyX509            = "x509"
)

// Parse parses "HostName=...;DeviceId=...;SharedAccessKey=..." (also
// ModuleId, GatewayHostName, SharedAccessKeyName, x509=true). Errors are
// fault.InvalidArgs, name the offending key and never echo a key value.
func Parse(s string) (*ConnectionString, error) {
	if len(s) > maxLen {
		return nil, fault.New(fault.InvalidArgs, "connection string is longer than %d bytes", maxLen)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fault.New(fault.InvalidArgs, "connection string is empty")
	}
	cs := &ConnectionString{}
	seen := map[string]bool{}
	var keyB64 string
	for i, part := range strings.Split(s, ";") {
		if part == "" {
			// A trailing ";" is common in copied strings; empty inner
			// segments are just as harmless.
			continue
		}
		// Values are base64 and may end in "=", so split at the first "=".
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fault.New(fault.InvalidArgs, "connection string segment %d has no '=' (want Key=Value)", i+1)
		}
		name = strings.TrimSpace(name)
		if !knownKey(name) {
			return nil, fault.New(fault.InvalidArgs, "connection string has unknown key %q (known: HostName, DeviceId, ModuleId, GatewayHostName, SharedAccessKey, SharedAccessKeyName, x509)", fault.Printable(name))
		}
		if seen[name] {
			return nil, fault.New(fault.InvalidArgs, "connection string repeats key %s", name)
		}
		seen[name] = true
		if value == "" {
			return nil, fault.New(fault.InvalidArgs, "connection string key %s has an empty value", name)
		}
		if name != keySharedAccessKey && hasControlOrSpace(value) {
			return nil, fault.New(fault.InvalidArgs, "connection string key %s contains whitespace or control characters", name)
		}
		switch name {
		case keyHostName:
			cs.HostName = value
		case keyDeviceID:
			cs.DeviceID = value
		case keyModuleID:
			cs.ModuleID = value
		case keyGatewayHostName:
			cs.GatewayHostName = value
		case keySharedAccessKey:
			keyB64 = value
		case keyKeyName:
			cs.SharedAccessKeyName = value
		case keyX509:
			switch strings.ToLower(value) {
			case "true":
				cs.X509 = true
			case "false":
			default:
				if strings.Contains(value, "=") {
					return nil, fault.New(fault.InvalidArgs, "connection string key x509 must be true or false; its value contains '=' %s", notShown)
				}
				return nil, fault.New(fault.InvalidArgs, "connection string key x509 must be true or false, not %q", fault.Printable(value))
			}
		}
	}
	switch {
	case cs.HostName == "":
		return nil, fault.New(fault.InvalidArgs, "connection string lacks HostName")
	case cs.DeviceID == "":
		return nil, fault.New(fault.InvalidArgs, "connection string lacks DeviceId")
	case cs.X509 && keyB64 != "":
		return nil, fault.New(fault.InvalidArgs, "connection string has both x509=true and SharedAccessKey; use one")
	case !cs.X509 && keyB64 == "":
		return nil, fault.New(fault.InvalidArgs, "connection string lacks SharedAccessKey (or x509=true)")
	case cs.SharedAccessKeyName != "" && keyB64 == "":
		return nil, fault.New(fault.InvalidArgs, "connection string has SharedAccessKeyName but no SharedAccessKey")
	}
	if err := checkHost(keyHostName, cs.HostName); err != nil {
		return nil, err
	}
	if cs.GatewayHostName != "" {
		if err := checkHost(keyGatewayHostName, cs.GatewayHostName); err != nil {
			return nil, err
		}
	}
	if keyB64 != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keyB64))
		if err != nil {
			return nil, fault.New(fault.InvalidArgs, "connection string key SharedAccessKey is not valid base64")
		}
		if len(key) == 0 {
			return nil, fault.New(fault.InvalidArgs, "connection string key SharedAccessKey decodes to nothing")
		}
		cs.SharedAccessKey = key
	}
	return cs, nil
}

// String renders the connection string with the key redacted, so it is
// safe for logs and error messages.
func (c *ConnectionString) String() string {
	if c == nil {
		return "<nil>"
	}
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	add(keyHostName, c.HostName)
	add(keyDeviceID, c.DeviceID)
	add(keyModuleID, c.ModuleID)
	add(keyGatewayHostName, c.GatewayHostName)
	add(keyKeyName, c.SharedAccessKeyName)
	if len(c.SharedAccessKey) > 0 {
		add(keySharedAccessKey, "<redacted>")
	}
	if c.X509 {
		add(keyX509, "true")
	}
	return b.String()
}

// GoString keeps %#v from printing the key bytes.
func (c *ConnectionString) GoString() string { return "connstr(" + c.String() + ")" }

// notShown ends the error for a value that holds an '=': a segment run
// into the one before (a ',' or space typed for the ';'), perhaps the
// SharedAccessKey, which an error must not carry.
const notShown = "(not shown: another segment, perhaps the SharedAccessKey, seems run into it; segments are separated by ';')"

func knownKey(k string) bool {
	switch k {
	case keyHostName, keyDeviceID, keyModuleID, keyGatewayHostName, keySharedAccessKey, keyKeyName, keyX509:
		return true
	}
	return false
}

// checkHost accepts a DNS name or IP literal with an optional port: the
// value becomes part of URLs, so it must not carry a path, userinfo or query.
// checkHost: hub and gateway names are bare names (package hubname).
func checkHost(key, h string) error {
	if strings.Contains(h, "=") {
		return fault.New(fault.InvalidArgs, "connection string key %s is not a DNS host name: it contains '=' %s", key, notShown)
	}
	if err := hubname.Check("connection string key "+key, h); err != nil {
		return fault.New(fault.InvalidArgs, "%v", err)
	}
	return nil
}

func hasControlOrSpace(s string) bool {
	for _, r := range s {
		if r <= 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
