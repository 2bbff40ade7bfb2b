package superconfig

import (
	"errors"
	"fmt"
	"strings"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	idconfig "github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/config"
	keysconfig "github.com/edgev2/edgev2/keys/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// checkWithDaemons parses each compiled file with its daemon's own parser:
// a setting the compiler let through but a daemon would refuse is reported
// at apply time, against the super-config key it came from.
func (c *Config) checkWithDaemons(p *plan) error {
	type check struct {
		name  string
		v     any
		parse func(path string, data []byte) error
		keys  [][2]string // daemon key prefix -> super-config key prefix
	}
	modules := [][2]string{{"policy", "runtime"}}
	if c.Agent != nil {
		modules = append(modules, [2]string{"modules[0]", "agent"})
		for i := range c.Modules {
			modules = append(modules, [2]string{fmt.Sprintf("modules[%d]", i+1), fmt.Sprintf("modules[%d]", i)})
		}
	}
	checks := []check{
		{"keyd.toml", p.keyd, func(path string, data []byte) error { _, err := keysconfig.Parse(path, data); return err },
			[][2]string{{"pkcs11_", "keys.pkcs11_"}}},
		{"certd.toml", p.certd, func(path string, data []byte) error { _, err := certsconfig.Parse(path, data); return err },
			[][2]string{{"cert_issuance." + idEdgeCA, "edge_ca"}, {"cert_issuance.", "cert_issuance.certs."}, {"est", "cert_issuance.est"}}},
		{"identityd.toml", p.identityd, func(path string, data []byte) error { _, err := idconfig.ParseConfig(path, data); return err }, nil},
		{"modrtd.toml", p.modrtd, func(path string, data []byte) error { _, err := rtconfig.ParseConfig(path, data); return err }, modules},
	}
	for _, ch := range checks {
		data, err := c.marshal(ch.v)
		if err != nil {
			return c.bad("", fmt.Sprintf("cannot compile %s: %v", ch.name, err), "report this as a bug in edgev2")
		}
		err = ch.parse(ch.name, data)
		var ce *config.Error
		if err == nil {
			continue
		}
		if !errors.As(err, &ce) {
			return c.bad("", fmt.Sprintf("the compiled %s is refused: %v", ch.name, err), "report this as a bug in edgev2")
		}
		key := ce.Key
		if id, ok := strings.CutPrefix(key, "preloaded_keys."); ok && p.keyFrom[id] != "" {
			key = p.keyFrom[id]
		} else if id, ok := strings.CutPrefix(key, "preloaded_certs."); ok && p.certFrom[id] != "" {
			key = p.certFrom[id]
		}
		for _, m := range ch.keys {
			if rest, ok := strings.CutPrefix(key, m[0]); ok {
				key = m[1] + rest
				break
			}
		}
		return c.bad(key, ce.Problem+" (in the compiled "+ch.name+")", ce.Fix)
	}
	return nil
}
