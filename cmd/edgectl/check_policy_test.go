package main

import (
	"strings"
	"testing"

	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

func TestCheckWarnsAboutEachPolicyOptIn(t *testing.T) {
	cfg, err := rtconfig.ParseConfig("modrtd.toml", []byte(`homedir = "/var/lib/edgev2/modrtd"
[[policy.allow]]
modules = ["edgeHub"]
cap_add = ["NET_ADMIN"]
[[policy.allow]]
images = ["acr.example/plc:*"]
binds = ["/dev/ttyUSB0"]
privileged = true
`))
	if err != nil {
		t.Fatal(err)
	}
	k := &checker{cfg: deviceConfigs{modrtd: cfg}}
	k.checkModulePolicy()
	if len(k.results) != 2 {
		t.Fatalf("want one warning per opt-in: %+v", k.results)
	}
	for i, want := range [][]string{{"edgeHub", "CAP_NET_ADMIN"}, {"acr.example/plc:*", "privileged", "host root", "/dev/ttyUSB0"}} {
		r := k.results[i]
		for _, w := range want {
			if r.Status != statusWarning || !strings.Contains(r.Message, w) {
				t.Errorf("check %s: %s %q, want a warning naming %q", r.Name, r.Status, r.Message, w)
			}
		}
	}
	if !strings.Contains(k.results[0].Fix, "images") {
		t.Errorf("a name-only opt-in should suggest narrowing it to an image: %q", k.results[0].Fix)
	}

	def, _ := rtconfig.ParseConfig("modrtd.toml", []byte(`homedir = "/var/lib/edgev2/modrtd"`))
	k = &checker{cfg: deviceConfigs{modrtd: def}}
	k.checkModulePolicy()
	if len(k.results) != 1 || k.results[0].Status != statusOK {
		t.Fatalf("default policy: %+v", k.results)
	}
}
