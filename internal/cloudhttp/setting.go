package cloudhttp

import (
	"time"

	"github.com/edgev2/edgev2/internal/fault"
)

// Default is the rule every numeric option of a cloud client follows:
// negative is a mistake ("EST timeout -1s is negative"), zero takes def.
// Clients check theirs in order with cmp.Or, which reports the first
// mistake.
func Default[T int | time.Duration](service, name string, v *T, def T) error {
	switch {
	case *v < 0:
		return fault.New(fault.InvalidArgs, "%s %s %v is negative", service, name, *v)
	case *v == 0:
		*v = def
	}
	return nil
}
