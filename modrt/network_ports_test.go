package modrt

import "testing"

// A module publishing a host port on one address cannot share it with
// another module publishing it on all addresses (either order): both DNAT
// rules would match, and the first would take the other's connections.
func TestPublishedPortsOverlappingAcrossAddressesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		first, second PortMapping
		ok            bool
	}{
		{PortMapping{HostPort: 8080, Protocol: "tcp"}, PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.1"}, false},
		{PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.1"}, PortMapping{HostPort: 8080, Protocol: "tcp"}, false},
		{PortMapping{HostPort: 8080, Protocol: "tcp"}, PortMapping{HostPort: 8080, Protocol: "tcp"}, false},
		{PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.1"}, PortMapping{HostPort: 8080, Protocol: "tcp", HostIP: "192.0.2.2"}, true},
		{PortMapping{HostPort: 8080, Protocol: "tcp"}, PortMapping{HostPort: 8080, Protocol: "udp"}, true},
		{PortMapping{HostPort: 8080, Protocol: "tcp"}, PortMapping{HostPort: 18080, Protocol: "tcp"}, true},
	} {
		n := &Network{ports: map[string]string{}}
		if err := n.claimPorts("a", []PortMapping{tc.first}); err != nil {
			t.Fatal(err)
		}
		if err := n.claimPorts("b", []PortMapping{tc.second}); (err == nil) != tc.ok {
			t.Errorf("%+v then %+v: %v; want ok %v", tc.first, tc.second, err, tc.ok)
		}
	}
}
