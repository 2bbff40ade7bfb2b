package main

import (
	"strings"
	"testing"
)

// The lab cloud is known by a bare name on 443, as Azure's endpoints are;
// anything that would hand clients a "host:port" hub name is a config error.
func TestListenerHostnameIsBareAndOn443(t *testing.T) {
	for _, tc := range []struct{ listen, flag, want, err string }{
		{"127.0.0.1:443", "", "localhost", ""},
		{"0.0.0.0:443", "", "localhost", ""},
		{"127.77.1.2:443", "hub-1-2.labcloud.test", "hub-1-2.labcloud.test", ""},
		{"127.0.0.1:8443", "myhub.example", "myhub.example", ""}, // the operator forwards 443 to it
		{"127.0.0.1:8443", "", "", "a hub host name carries no port"},
		{"127.0.0.1:0", "", "", "listen on port 443"},
		{"127.0.0.1:443", "localhost:443", "", "carries a port"},
		{"127.0.0.1:443", "[::1]", "", "carries a port"},
		{"127.0.0.1:443", "hub/x", "", "not a DNS host name"},
		{"127.0.0.1", "", "", "--listen"},
	} {
		got, err := listenerHostname(tc.listen, tc.flag)
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("listenerHostname(%q, %q) = %q, %v; want %q, error containing %q", tc.listen, tc.flag, got, err, tc.want, tc.err)
		}
	}
}
