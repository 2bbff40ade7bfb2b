package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// checkModuleNetwork checks that the default network's CNI plugins are
// installed and warns about every module allowed the host's network.
func (k *checker) checkModuleNetwork() {
	c := k.cfg.modrtd
	if c == nil {
		return
	}
	var missing []string
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		found := false
		for _, d := range c.Network.PluginDirs {
			if st, err := os.Stat(filepath.Join(d, p)); err == nil && st.Mode().IsRegular() {
				found = true
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		k.add("modules.network", statusError, fmt.Sprintf("CNI plugins %s are not in %s: modules on the default network %s cannot start", strings.Join(missing, ", "), strings.Join(c.Network.PluginDirs, ", "), c.Network.Name),
			"install them: `apt-get install containernetworking-plugins` (or correct [network] cni_plugin_dirs in modrtd.toml)")
	} else {
		k.ok("modules.network", "default network %s: bridge %s, subnet %s", c.Network.Name, c.Network.Bridge, c.Network.Subnet)
	}
	for _, m := range c.Policy.AllowHostNetwork {
		k.add("modules.host-network."+m, statusWarning, fmt.Sprintf("module %s may use the host's network: it reaches every service on the host's loopback and can bind any host port", m),
			"remove it from [policy] allow_host_network in modrtd.toml ([runtime] allow_host_network in config.toml) unless it must")
	}
}
