package config

import (
	"slices"
	"strings"

	"github.com/distribution/reference"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// Applies reports whether the grant is for this module.
func (g Grant) Applies(module, image string) bool {
	if len(g.Modules) == 0 && len(g.Images) == 0 {
		return false
	}
	if len(g.Modules) > 0 && !slices.Contains(g.Modules, module) {
		return false
	}
	if len(g.Images) > 0 {
		ok := false
		for _, im := range g.Images {
			p, wild := strings.CutSuffix(im, "*")
			if !wild {
				if ref, err := reference.ParseDockerRef(im); err == nil {
					im = ref.String() // "alpine" is docker.io/library/alpine:latest, as specs' images are
				}
			} else if p = imagePrefix(p); p == "" {
				continue // matches more than one repository or registry: never
			}
			if wild && strings.HasPrefix(image, p) || im == image {
				ok = true
			}
		}
		return ok
	}
	return true
}

// imagePrefix is the normalised form of what comes before an image
// pattern's "*": it must end a repository (":", any tag of it) or a path
// ("/", every repository below it), else "acr.io/hub*" would match
// "acr.io/hub-evil" and "acr.io*" the registry "acr.io.evil.example". ""
// for a prefix that does not. "alpine:" is "docker.io/library/alpine:",
// as specs' images are.
func imagePrefix(p string) string {
	switch {
	case strings.HasSuffix(p, ":"):
		if named, err := reference.ParseNormalizedNamed(strings.TrimSuffix(p, ":")); err == nil {
			return named.Name() + ":"
		}
		return ""
	case strings.HasSuffix(p, "/") && len(p) > 1:
		return p
	}
	return ""
}

// Opts lists what the grant gives away, for edgectl check.
func (g Grant) Opts() []string {
	var out []string
	if g.Privileged {
		out = append(out, "privileged (every capability and device: host root)")
	}
	if g.HostPID {
		out = append(out, "host_pid (sees and signals every host process)")
	}
	for _, c := range g.CapAdd {
		out = append(out, "cap_add "+modspec.NormCap(c))
	}
	for _, b := range g.Binds {
		out = append(out, "binds "+b+" (read-write)")
	}
	for _, b := range g.ReadOnlyBinds {
		out = append(out, "read_only_binds "+b)
	}
	return out
}
