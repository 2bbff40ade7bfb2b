package superconfig

import (
	"fmt"

	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// Workload is [workload]: what the workload API grants modules beyond
// their own name.
type Workload struct {
	// ServerCertNames: module name -> host names it may get workload
	// server certificates for (modrtd [workload.server_cert_names]).
	ServerCertNames map[string][]string `toml:"server_cert_names"`
}

// planWorkload checks [workload] and copies it to modrtd.toml; modrtd's
// own parser (checkWithDaemons) checks the names again.
func (c *Config) planWorkload(p *plan) error {
	if c.Workload == nil || len(c.Workload.ServerCertNames) == 0 {
		return nil
	}
	for _, m := range sortedKeys(c.Workload.ServerCertNames) {
		key := "workload.server_cert_names." + m
		if err := modspec.ValidateName(m); err != nil {
			return c.bad(key, err.Error(), "use the module's name")
		}
		for i, n := range c.Workload.ServerCertNames[m] {
			if len(n) > 253 || !hostnamePattern.MatchString(n) {
				return c.bad(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("%q is not a host name", n), `use a DNS name such as "opcua.plant.example" (no wildcards)`)
			}
		}
	}
	p.modrtd.Workload = rtconfig.WorkloadConfig{ServerCertNames: c.Workload.ServerCertNames}
	return nil
}
