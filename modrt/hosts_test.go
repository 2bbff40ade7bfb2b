package modrt

import "testing"

func TestHostsTextKeepsTheHostsEntriesAndNamesEveryModule(t *testing.T) {
	cases := []struct {
		base  string
		names []string
		want  string
	}{
		{"127.0.0.1 localhost\n", []string{"edgeAgent", "edgeHub"}, "127.0.0.1 localhost\n" + hostsMarker + "\n127.0.0.1\tedgeAgent edgeHub\n"},
		{"127.0.0.1 localhost", nil, "127.0.0.1 localhost\n" + hostsMarker + "\n"},
		{"", []string{"a"}, hostsMarker + "\n127.0.0.1\ta\n"},
	}
	for _, c := range cases {
		if got := string(hostsText([]byte(c.base), c.names)); got != c.want {
			t.Errorf("hostsText(%q, %q) = %q, want %q", c.base, c.names, got, c.want)
		}
	}
}
