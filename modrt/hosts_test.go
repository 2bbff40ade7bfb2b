package modrt

import (
	"net/netip"
	"testing"
)

func TestHostsTextKeepsTheHostsEntriesAndNamesEveryModule(t *testing.T) {
	host := func(names ...string) []hostEntry {
		f, _ := moduleHosts(names, nil, netip.Addr{})
		return f
	}
	cases := []struct {
		base    string
		entries []hostEntry
		want    string
	}{
		{"127.0.0.1 localhost\n", host("edgeHub", "edgeAgent"), "127.0.0.1 localhost\n" + hostsMarker + "\n127.0.0.1\tedgeAgent edgeHub\n"},
		{"127.0.0.1 localhost", nil, "127.0.0.1 localhost\n" + hostsMarker + "\n"},
		{"", host("a"), hostsMarker + "\n127.0.0.1\ta\n"},
	}
	for _, c := range cases {
		if got := string(hostsText([]byte(c.base), c.entries)); got != c.want {
			t.Errorf("hostsText(%q, %v) = %q, want %q", c.base, c.entries, got, c.want)
		}
	}
}

func TestModuleHostsPutHostModulesAtTheGatewayForNetworkModules(t *testing.T) {
	gw := netip.MustParseAddr("10.213.0.1")
	forHost, forNet := moduleHosts([]string{"edgeAgent"}, map[string]netip.Addr{"edgeHub": netip.MustParseAddr("10.213.0.2")}, gw)
	if got := string(hostsText(nil, forHost)); got != hostsMarker+"\n127.0.0.1\tedgeAgent\n10.213.0.2\tedgeHub\n" {
		t.Errorf("host-network modules' hosts: %q", got)
	}
	if got := string(hostsText([]byte(networkHostsBase), forNet)); got != networkHostsBase+hostsMarker+"\n10.213.0.1\tedgeAgent\n10.213.0.2\tedgeHub\n" {
		t.Errorf("network modules' hosts: %q", got)
	}
}

func TestResolvConfDropsLoopbackNameServers(t *testing.T) {
	got := string(resolvConfText([]byte("search lan\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.53\noptions edns0\n")))
	want := "search lan\n# nameserver 127.0.0.53 (loopback: not reachable from a module's network)\n# nameserver ::1 (loopback: not reachable from a module's network)\nnameserver 192.0.2.53\noptions edns0\n"
	if got != want {
		t.Errorf("resolvConfText = %q, want %q", got, want)
	}
}
