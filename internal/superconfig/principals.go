package superconfig

import (
	"fmt"
	"regexp"
	"strings"

	idconfig "github.com/edgev2/edgev2/identity/config"

	"github.com/edgev2/edgev2/internal/label"
)

// userPattern is a POSIX-ish user or group name as Debian's adduser
// accepts it (system names may start with '_'; a trailing '$' is Samba's).
var userPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$`)

// Identity access levels.
const (
	identityRead        = "read"
	identityManage      = "manage"
	identityReprovision = "reprovision"
	identityAll         = "all"
)

// maxGlob bounds one id pattern.
const maxGlob = 256

func (c *Config) planPrincipals(p *plan) error {
	for i, pr := range c.Principals {
		key := fmt.Sprintf("principal[%d]", i)
		switch {
		case pr.User != "" && pr.Group != "":
			return c.bad(key+".group", "set user or group, not both", "use one [[principal]] entry per user or group")
		case pr.User == "" && pr.Group == "":
			return c.bad(key+".user", "missing", `name the local user, e.g. user = "alice" (or group = "edge-operators")`)
		case pr.User != "" && !userPattern.MatchString(pr.User):
			return c.bad(key+".user", fmt.Sprintf("%q is not a user name", pr.User), "use the user's login name (letters, digits, '_', '.', '-'; not a number: a uid goes in uid = ...)")
		case pr.Group != "" && !userPattern.MatchString(pr.Group):
			return c.bad(key+".group", fmt.Sprintf("%q is not a group name", pr.Group), "use the group's name (letters, digits, '_', '.', '-')")
		}
		lists := []struct {
			name string
			v    []string
		}{{"keys", pr.Keys}, {"keys_manage", pr.KeysManage}, {"keys_export", pr.KeysExport}, {"certs", pr.Certs},
			{"certs_manage", pr.CertsManage}, {"certs_issue", pr.CertsIssue}, {"certs_issue_ca", pr.CertsIssueCA}, {"modules", pr.Modules}, {"modules_manage", pr.ModulesManage}, {"identity_modules", pr.IdentityModules}}
		grants := 0
		for _, l := range lists {
			for j, g := range l.v {
				if msg := checkGlob(g); msg != "" {
					return c.bad(fmt.Sprintf("%s.%s[%d]", key, l.name, j), msg, `use an id, or a pattern where * matches any run of characters, e.g. "module-*"`)
				}
			}
			grants += len(l.v)
		}
		switch pr.Identity {
		case "":
			if len(pr.IdentityModules) > 0 {
				return c.bad(key+".identity_modules", "only used with identity = \"manage\" or \"all\"", `set identity = "manage", or remove it`)
			}
		case identityRead, identityReprovision:
			grants++
			if len(pr.IdentityModules) > 0 {
				return c.bad(key+".identity_modules", "only used with identity = \"manage\" or \"all\"", `set identity = "manage", or remove it`)
			}
		case identityManage, identityAll:
			grants++
			if len(pr.IdentityModules) == 0 {
				return c.bad(key+".identity_modules", fmt.Sprintf("identity = %q needs the module identities it may manage", pr.Identity), `set identity_modules = ["my-module"] (or ["*"] for all)`)
			}
		default:
			return c.bad(key+".identity", fmt.Sprintf("unknown access %q", pr.Identity), `use "read", "manage", "reprovision" or "all"`)
		}
		switch pr.IDType {
		case "":
			if pr.UID != nil || pr.Name != "" {
				return c.bad(key+".id_type", "uid and name map the user to an identity, but id_type is not set", `set id_type = "module", "device" or "local"`)
			}
			if grants == 0 {
				return c.bad(key, "grants nothing", `add e.g. keys = ["my-key"], or identity = "read", or remove the entry`)
			}
		case "device", "module", "local":
			if pr.Group != "" {
				return c.bad(key+".id_type", "an identity belongs to one uid, not a group", "use user = ...")
			}
			name := pr.Name
			if name == "" {
				name = pr.User
			}
			if msg := label.ValidateID("identity name", name); msg != "" {
				return c.bad(key+".name", msg, "use the module id (for id_type = \"module\")")
			}
			ip := idconfig.Principal{Name: name, IDType: pr.IDType}
			if pr.UID != nil {
				ip.UID = *pr.UID
			} else {
				p.lookupUID[len(p.identityd.Principals)] = i
			}
			p.identityd.Principals = append(p.identityd.Principals, ip)
		default:
			return c.bad(key+".id_type", fmt.Sprintf("unknown id_type %q", pr.IDType), `use "device", "module" or "local"`)
		}
	}
	return nil
}

// checkGlob says what is wrong with an id pattern, or "".
func checkGlob(g string) string {
	if len(g) > maxGlob {
		return fmt.Sprintf("pattern is %d bytes long; the limit is %d", len(g), maxGlob)
	}
	if msg := label.ValidateID("pattern", g); msg != "" {
		return msg
	}
	return ""
}

// globRegexp is the anchored regular expression (JavaScript and Go
// syntax) for a pattern: * matches any run of characters, everything else
// itself.
func globRegexp(g string) string {
	parts := strings.Split(g, "*")
	for i, s := range parts {
		parts[i] = regexp.QuoteMeta(s)
	}
	return `^` + strings.Join(parts, `[\s\S]*`) + `$`
}
