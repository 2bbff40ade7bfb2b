package superconfig

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

func (c *Config) planRuntime(r *ids, p *plan) error {
	rt := c.Runtime
	out := rtconfig.Config{Homedir: modrtdHome, Containerd: rt.ContainerdAddress, Namespace: rt.Namespace, RegistryCAFiles: rt.RegistryCAFiles}
	if rt.ContainerdAddress != "" && !strings.HasPrefix(rt.ContainerdAddress, "/") {
		return c.bad("runtime.containerd_address", fmt.Sprintf("%q is not an absolute socket path", rt.ContainerdAddress), "use /run/containerd/containerd.sock")
	}
	if rt.TrustBundle != "" {
		id, err := c.certRef(r, "runtime.trust_bundle", rt.TrustBundle, "trust-bundle")
		if err != nil {
			return err
		}
		out.TrustBundle = id
	}
	for i, f := range rt.RegistryCAFiles {
		if !strings.HasPrefix(f, "/") {
			return c.bad(fmt.Sprintf("runtime.registry_ca_files[%d]", i), fmt.Sprintf("%q is not an absolute path", f), "use an absolute path to a PEM file")
		}
	}
	if rt.ForbiddenBindPrefixes != nil || rt.AllowPrivileged {
		return c.bad("runtime.forbidden_bind_prefixes", "the module policy is now an allowlist; forbidden_bind_prefixes and allow_privileged are gone",
			"remove them; allow what modules need per module in [[runtime.policy.allow]] (docs/config.md)")
	}
	// The runtime's own validation of [policy], under the super-config's keys.
	probe := rtconfig.Config{Homedir: modrtdHome, Policy: rt.Policy}
	if err := probe.ValidatePolicy("config.toml"); err != nil {
		var ce *rtconfig.ConfigError
		if errors.As(err, &ce) {
			return c.bad("runtime."+ce.Key, ce.Problem, strings.ReplaceAll(ce.Fix, "[[policy.allow]]", "[[runtime.policy.allow]]"))
		}
		return err
	}
	hostNet := append(append([]string(nil), rt.AllowHostNetwork...), rt.Policy.AllowHostNetwork...)
	if len(rt.Policy.ReadOnlyBinds) > 0 || len(rt.Policy.Allow) > 0 || len(hostNet) > 0 || rt.Policy.DefaultPidsLimit != 0 || rt.Policy.MaxPidsLimit != 0 || rt.Policy.MaxLogSize != "" {
		out.Policy = rtconfig.PolicyConfig{ReadOnlyBinds: rt.Policy.ReadOnlyBinds, Allow: rt.Policy.Allow, AllowHostNetwork: hostNet,
			DefaultPidsLimit: rt.Policy.DefaultPidsLimit, MaxPidsLimit: rt.Policy.MaxPidsLimit, MaxLogSize: rt.Policy.MaxLogSize}
	}
	for i, m := range rt.AllowHostNetwork {
		if err := modspec.ValidateName(m); err != nil {
			return c.bad(fmt.Sprintf("runtime.allow_host_network[%d]", i), err.Error(), "list module names")
		}
	}
	netCfg := rtconfig.NetworkConfig{}
	if n := rt.Network; n != nil {
		netCfg = rtconfig.NetworkConfig{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, PluginDirs: n.CNIPluginDirs, StateDir: n.StateDir}
		if err := netCfg.Validate(); err != nil {
			return c.bad("runtime."+err.Key, err.Problem, err.Fix)
		}
		out.Network = netCfg
	}
	if ec := c.EdgeCA; ec != nil {
		if ec.Method != "" {
			out.EdgeCACert, out.EdgeCAKey = idEdgeCA, idEdgeCA
		} else {
			var err error
			if out.EdgeCACert, err = c.certRef(r, "edge_ca.cert", ec.Cert, idEdgeCA); err != nil {
				return err
			}
			if out.EdgeCAKey, err = c.keyRef(r, "edge_ca.pk", ec.PK, idEdgeCA); err != nil {
				return err
			}
		}
	}
	policy := rtpolicy.FromConfig(&probe)
	policy.Static = true
	seen := map[string]string{}
	check := func(key string, m Module) error {
		if err := modspec.ValidateName(m.Name); err != nil {
			return c.bad(key+".name", err.Error(), "use a letter or digit, then letters, digits, '_', '.' or '-'")
		}
		if prev, ok := seen[m.Name]; ok {
			return c.bad(key+".name", fmt.Sprintf("module %q is also %s", m.Name, prev), "give each module its own name")
		}
		seen[m.Name] = key
		if strings.TrimSpace(m.Spec) == "" {
			return c.bad(key+".spec", "missing", `set spec = '''{"name": "...", "type": "docker", "config": {"settings": {"image": "..."}}}'''`)
		}
		s, err := modspec.ParseSpec([]byte(m.Spec))
		if err != nil {
			return c.bad(key+".spec", err.Error(), "write a ModuleSpec JSON (docs/modules.md)")
		}
		if s.Name == "" {
			s.Name = m.Name
		}
		// The runtime's own check of binds and privileges, run now so a
		// forbidden bind is refused at apply time rather than at start.
		mp := policy
		mp.AllowHostNetwork = slices.Contains(rt.AllowHostNetwork, m.Name) || slices.Contains(rt.Policy.AllowHostNetwork, m.Name)
		if _, err := mp.Admit(s, rtpolicy.Extra{ImageEntrypoint: []string{"/entrypoint"}, Network: netCfg.Name}); err != nil {
			return c.bad(key+".spec", err.Error(), "remove the bind, privilege or host network, or allow it for this module in [[runtime.policy.allow]] or [runtime] allow_host_network (docs/modules.md)")
		}
		return nil
	}
	if a := c.Agent; a != nil {
		m := *a
		if m.Name == "" {
			m.Name = "edgeAgent"
		}
		if err := check("agent", m); err != nil {
			return err
		}
		mm, err := c.sealRegistryPassword(p, "agent.spec", m)
		if err != nil {
			return err
		}
		out.Agent = &mm
	}
	for i, m := range c.Modules {
		if err := check(fmt.Sprintf("modules[%d]", i), m); err != nil {
			return err
		}
		mm, err := c.sealRegistryPassword(p, fmt.Sprintf("modules[%d].spec", i), m)
		if err != nil {
			return err
		}
		out.Modules = append(out.Modules, mm)
	}
	p.modrtd = out
	return nil
}
