package config

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// EdgeHubModule is the module that may also get a server certificate for
// the device's gateway hostname: downstream devices connect to it by that name.
const EdgeHubModule = "edgeHub"

// WorkloadConfig is modrtd's [workload] table.
type WorkloadConfig struct {
	// ServerCertNames grants modules host names, beyond their own module
	// name, that they may get workload server certificates for:
	// [workload.server_cert_names] opcua = ["opcua.plant.example"].
	ServerCertNames map[string][]string `toml:"server_cert_names,omitempty"`
}

var serverNamePattern = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*$`)

func (w WorkloadConfig) validate(path string) error {
	for module, names := range w.ServerCertNames {
		key := "workload.server_cert_names." + module
		if err := modspec.ValidateName(module); err != nil {
			return &ConfigError{File: path, Key: key, Problem: err.Error(), Fix: "use the module's name"}
		}
		for i, n := range names {
			if net.ParseIP(n) == nil && (len(n) > 253 || !serverNamePattern.MatchString(n)) {
				return &ConfigError{File: path, Key: fmt.Sprintf("%s[%d]", key, i), Problem: fmt.Sprintf("%q is not a host name or IP address", n), Fix: `use a DNS name such as "opcua.plant.example" (no wildcards) or an address`}
			}
		}
	}
	return nil
}

// ServerCertNameAllowed reports whether module may get a workload server
// certificate for name: its own module name, a name
// [workload.server_cert_names] grants it, or, for edgeHub, the gateway
// hostname modrtd gives it (IOTEDGE_GATEWAYHOSTNAME). Host names compare
// case-insensitively. The module's own name counts only as a single label
// (no dot): the deployment names modules, and a module named like a host
// outside the device ("myhub.azure-devices.net") must not get the edge
// CA's word for that host; such a name needs a grant like any other. Nor
// does a module named like the gateway (its host name, or the first label
// of a dotted one, which downstream devices on a search domain reach
// edgeHub by) or like a loopback name of the hosts file get that name.
func (w WorkloadConfig) ServerCertNameAllowed(module, name, gateway string) bool {
	if strings.EqualFold(name, module) && !strings.Contains(module, ".") && !reservedHostName(module, gateway) {
		return true
	}
	for _, n := range w.ServerCertNames[module] {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return module == EdgeHubModule && gateway != "" && strings.EqualFold(name, gateway)
}

// reservedHostName reports whether a single-label name is the gateway's
// (whole, or the first label of a dotted gateway name), a loopback name
// of the hosts file modules get, or an IPv4 address in inet_aton's
// one-number form ("2130706433", "0x7f000001": what glibc, curl and
// OpenSSL-based clients connect to).
func reservedHostName(name, gateway string) bool {
	if inetAtonNumber(name) {
		return true
	}
	short, _, _ := strings.Cut(gateway, ".")
	for _, r := range []string{gateway, short, "localhost", "ip6-localhost", "ip6-loopback"} {
		if r != "" && strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// inetAtonNumber reports whether name is one number as inet_aton reads an
// address: decimal or octal digits, or hex digits after "0x".
func inetAtonNumber(name string) bool {
	digits, hex := name, false
	if len(name) >= 2 && name[0] == '0' && (name[1] == 'x' || name[1] == 'X') {
		digits, hex = name[2:], true
	}
	for _, c := range digits {
		if !(c >= '0' && c <= '9' || hex && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')) {
			return false
		}
	}
	return digits != "" || hex
}
