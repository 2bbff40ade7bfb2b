package superconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// RulesPath is where the principals' polkit rules are installed.
const RulesPath = "/etc/polkit-1/rules.d/60-edgev2-principals.rules"

// grant is one polkit action a principal may take.
type grant struct {
	Action string `json:"-"`
	// Detail is the action detail naming the object (key_id, cert_id,
	// module_id); "" grants the action whatever it names.
	Detail string `json:"detail"`
	// List also grants calls that name no object (listing).
	List     bool     `json:"list"`
	Patterns []string `json:"patterns"`
	// Require lists details that must have exactly these values.
	Require map[string]string `json:"require,omitempty"`
}

func (pr *Principal) grants() []grant {
	var gs []grant
	add := func(action, detail string, globs []string, list bool) {
		if len(globs) == 0 {
			return
		}
		g := grant{Action: action, Detail: detail, List: list}
		for _, s := range globs {
			g.Patterns = append(g.Patterns, globRegexp(s))
		}
		gs = append(gs, g)
	}
	add("org.edgev2.keys.use", "key_id", pr.Keys, false)
	add("org.edgev2.keys.manage", "key_id", pr.KeysManage, false)
	add("org.edgev2.keys.export", "key_id", pr.KeysExport, false)
	add("org.edgev2.certs.read", "cert_id", pr.Certs, true)
	add("org.edgev2.certs.manage", "cert_id", pr.CertsManage, false)
	// Under a CA, a principal obtains only the subjects the configuration
	// gives its cert ids; a subject from the request needs an admin.
	add("org.edgev2.certs.issue", "cert_id", pr.CertsIssue, false)
	if len(gs) > 0 && gs[len(gs)-1].Action == "org.edgev2.certs.issue" {
		gs[len(gs)-1].Require = map[string]string{"subject": "configured"}
	}
	add("org.edgev2.certs.issue-ca", "cert_id", pr.CertsIssueCA, false)
	add(rtapi.ActionRead, rtapi.DetailModuleID, pr.Modules, true)
	// Image pulls, imports and GC name no module: only for "*".
	add(rtapi.ActionManage, rtapi.DetailModuleID, pr.ModulesManage, slices.Contains(pr.ModulesManage, "*"))
	whole := func(action string) { gs = append(gs, grant{Action: action}) }
	switch pr.Identity {
	case identityRead:
		whole("org.edgev2.identity.read")
	case identityManage:
		whole("org.edgev2.identity.read")
		add("org.edgev2.identity.manage", "module_id", pr.IdentityModules, false)
	case identityReprovision:
		whole("org.edgev2.identity.read")
		whole("org.edgev2.identity.reprovision")
	case identityAll:
		whole("org.edgev2.identity.read")
		add("org.edgev2.identity.manage", "module_id", pr.IdentityModules, false)
		whole("org.edgev2.identity.reprovision")
	}
	return gs
}

// rules compiles the [[principal]] entries into one polkit rules file.
// Everything taken from the config is JSON-encoded into the JavaScript,
// so no name or pattern can inject code.
func (c *Config) rules() ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Written by `edgectl config apply` from %s ([[principal]] entries);\n", jsComment(c.path))
	b.WriteString("// edit that file, not this one. Patterns are anchored; * matches any run of characters.\n")
	if len(c.Principals) == 0 {
		b.WriteString("// No principals: only the services' grants (50-edgev2-services.rules) apply.\n")
	}
	for i, pr := range c.Principals {
		gs := pr.grants()
		if len(gs) == 0 {
			continue // an identity mapping only
		}
		table := map[string]grant{}
		for _, g := range gs {
			if g.Patterns == nil {
				g.Patterns = []string{}
			}
			table[g.Action] = g
		}
		grantsJSON, err := json.MarshalIndent(table, "  ", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode grants of principal[%d]: %w", i, err)
		}
		var who, test string
		if pr.User != "" {
			who, test = "user "+pr.User, "subject.user !== "+jsString(pr.User)
		} else {
			who, test = "group "+pr.Group, "!subject.isInGroup("+jsString(pr.Group)+")"
		}
		fmt.Fprintf(&b, "\n// principal[%d] (line %d): %s\n", i, c.lines.line(fmt.Sprintf("principal[%d]", i)), jsComment(who))
		fmt.Fprintf(&b, `polkit.addRule(function(action, subject) {
  if (%s) { return polkit.Result.NOT_HANDLED; }
  var grants = %s;
  if (!Object.prototype.hasOwnProperty.call(grants, action.id)) { return polkit.Result.NOT_HANDLED; }
  var g = grants[action.id];
  for (var k in g.require) {
    if (action.lookup(k) !== g.require[k]) { return polkit.Result.NOT_HANDLED; }
  }
  if (g.detail === "") { return polkit.Result.YES; }
  var id = action.lookup(g.detail);
  if (id === undefined || id === null || id === "") {
    return g.list ? polkit.Result.YES : polkit.Result.NOT_HANDLED;
  }
  for (var i = 0; i < g.patterns.length; i++) {
    if (new RegExp(g.patterns[i]).test(id)) { return polkit.Result.YES; }
  }
  return polkit.Result.NOT_HANDLED;
});
`, test, grantsJSON)
	}
	return b.Bytes(), nil
}

// jsString is s as a JavaScript string literal. encoding/json escapes
// quotes, backslashes, control characters, <, >, & and U+2028/U+2029.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jsComment keeps a name on one comment line.
func jsComment(s string) string {
	b := []rune{}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 {
			r = '?'
		}
		b = append(b, r)
	}
	return string(b)
}
