package main

import (
	"fmt"
	"strings"
)

// checkModulePolicy warns about every opt-in of modrtd's module policy:
// each gives the modules it names more than the default (Docker's default
// capabilities, no devices, binds only of their own volume), and the
// operator should know what, to whom.
func (k *checker) checkModulePolicy() {
	c := k.cfg.modrtd
	if c == nil {
		k.add("modules.policy", statusSkipped, "modrtd.toml did not load", "")
		return
	}
	if len(c.Policy.Allow) == 0 {
		msg := "modules get the default policy only: Docker's default capabilities, no devices, binds of their own volume directory"
		if len(c.Policy.ReadOnlyBinds) > 0 {
			msg += ", and read-only binds of " + strings.Join(c.Policy.ReadOnlyBinds, ", ")
		}
		k.ok("modules.policy", "%s", msg)
		return
	}
	for i, g := range c.Policy.Allow {
		var who []string
		if len(g.Modules) > 0 {
			who = append(who, "modules "+strings.Join(g.Modules, ", "))
		}
		if len(g.Images) > 0 {
			who = append(who, "images "+strings.Join(g.Images, ", "))
		}
		fix := "keep it only if these modules need it; narrow it to an image (images = [...]) so that a module merely named so does not get it"
		if len(g.Images) > 0 {
			fix = "keep it only if these modules need it"
		}
		gives := g.Opts()
		if len(gives) == 0 {
			gives = []string{"nothing beyond the default"}
		}
		k.add(fmt.Sprintf("modules.policy.allow[%d]", i), statusWarning,
			fmt.Sprintf("[[policy.allow]] gives %s: %s", strings.Join(who, " with "), strings.Join(gives, "; ")), fix)
	}
}
