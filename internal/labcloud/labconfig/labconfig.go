// Package labconfig holds what the tables of edgev2-labcloud's
// configuration file ([est], [dps], [hub]) share: how a mistake is told.
package labconfig

// Error is a configuration mistake in one table, naming the key and the
// fix: "dps.enrollments[0].registration_id: ... (fix: ...)".
type Error struct {
	Table, Key, Problem, Fix string
}

func (e *Error) Error() string {
	s := e.Table + "." + e.Key + ": " + e.Problem
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}
