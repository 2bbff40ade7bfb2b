package modrt

import (
	"testing"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// A module publishing a host port on one address cannot share it with
// another module publishing it on all addresses (either order): both DNAT
// rules would match, and the first would take the other's connections.
func TestPublishedPortsOverlappingAcrossAddressesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		first, second modspec.PortMapping
		ok            bool
	}{
		{modspec.PortMapping{HostPort: 8080, Protocol: "tcp"}, modspec.PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.1"}, false},
		{modspec.PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.1"}, modspec.PortMapping{HostPort: 8080, Protocol: "tcp"}, false},
		{modspec.PortMapping{HostPort: 8080, Protocol: "tcp"}, modspec.PortMapping{HostPort: 8080, Protocol: "tcp"}, false},
		{modspec.PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.1"}, modspec.PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.2"}, true},
		{modspec.PortMapping{HostPort: 8080, Protocol: "tcp"}, modspec.PortMapping{HostPort: 8080, Protocol: "udp"}, true},
		{modspec.PortMapping{HostPort: 8080, Protocol: "tcp"}, modspec.PortMapping{HostPort: 18080, Protocol: "tcp"}, true},
	} {
		n := &Network{ports: map[string]string{}}
		if err := n.claimPorts("a", []modspec.PortMapping{tc.first}); err != nil {
			t.Fatal(err)
		}
		if err := n.claimPorts("b", []modspec.PortMapping{tc.second}); (err == nil) != tc.ok {
			t.Errorf("%+v then %+v: %v; want ok %v", tc.first, tc.second, err, tc.ok)
		}
	}
}
