package config

import (
	"errors"
	"strings"
	"testing"
)

func TestNetworkConfigDefaultsAndRefusals(t *testing.T) {
	c, err := ParseConfig("modrtd.toml", []byte("homedir = \"/var/lib/edgev2/modrtd\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Network; n.Name != "azure-iot-edge" || n.Bridge != "edgev2br0" || n.Subnet != "10.213.0.0/24" || n.StateDir != "/run/edgev2/network" || len(n.PluginDirs) != 1 || n.PluginDirs[0] != "/usr/lib/cni" {
		t.Errorf("defaults: %+v", n)
	}
	for _, tc := range []struct{ text, key, problem string }{
		{"[network]\nsubnet = \"8.8.8.0/24\"\n", "network.subnet", "private"},
		{"[network]\nsubnet = \"10.213.0.1/24\"\n", "network.subnet", "private"},
		{"[network]\nsubnet = \"fd00::/64\"\n", "network.subnet", "IPv4"},
		{"[network]\nbridge = \"a-bridge-name-too-long\"\n", "network.bridge", "interface name"},
		{"[network]\nname = \"host\"\n", "network.name", "network name"},
		{"[network]\nstate_dir = \"run/x\"\n", "network.state_dir", "absolute"},
		{"[policy]\nallow_host_network = [\"../x\"]\n", "policy.allow_host_network[0]", ""},
	} {
		_, err := ParseConfig("modrtd.toml", []byte("homedir = \"/h\"\n"+tc.text))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Problem, tc.problem) {
			t.Errorf("%q: %v, want key %s", tc.text, err, tc.key)
		}
	}
}

func TestPolicyImagePatternsEndAtARepositoryOrPath(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"acr.io/hub:*", true}, {"acr.io/team/*", true}, {"acr.io/hub:1.4", true}, {"alpine:*", true},
		{"acr.io/hub*", false}, {"acr.io*", false}, {"*", false}, {"acr.io/h*b:1", false},
	} {
		_, err := ParseConfig("modrtd.toml", []byte("homedir = \"/x\"\n[[policy.allow]]\nimages = [\""+tc.pattern+"\"]\nhost_pid = true\n"))
		if (err == nil) != tc.ok {
			t.Errorf("images = [%q]: %v; want ok %v", tc.pattern, err, tc.ok)
		}
	}
}
