// Package hubname checks IoT Hub host names: bare DNS names such as
// "myhub.azure-devices.net", reached on port 443 — never "host:port".
//
// A real hub's name carries no port, and the Azure SDKs put the whole
// string into the TLS host and the SAS audience, so a name with a port
// works with no Azure client; edgev2 refuses it everywhere a hub name
// enters (configuration, connection strings, DPS's assignedHub) rather
// than half-support it. A lab hub gets a name that resolves to it on 443
// (edgev2-labcloud --hub-hostname).
package hubname

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/edgev2/edgev2/fault"
)

// pattern: RFC 1123 labels ('_' tolerated, as resolvers do).
var pattern = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$`)

// Check reports why h is not a usable hub (or gateway) host name; what
// names the value (e.g. "IoT Hub host") starts the message.
func Check(what, h string) error {
	switch {
	case h == "":
		return fmt.Errorf("%s is empty", what)
	case strings.Contains(h, ":"):
		return fmt.Errorf("%s %q carries a port (or is an IPv6 address): IoT Hub host names are bare names, served on port 443", what, fault.Printable(h))
	case len(h) > 253 || !pattern.MatchString(h):
		return fmt.Errorf("%s %q is not a DNS host name", what, fault.Printable(h))
	}
	return nil
}
