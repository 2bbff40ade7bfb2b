package keys

import "errors"

// configProblem marks an error that restarting keyd cannot fix: a PIN that
// is missing, unreadable or wrong, or a token URI that picks no token or
// several. keyd exits 78 on it, so systemd does not retry a wrong PIN until
// the token locks.
type configProblem struct{ error }

func (c configProblem) Unwrap() error { return c.error }

func asConfigProblem(err error) error {
	if err == nil {
		return nil
	}
	return configProblem{err}
}

// IsConfigProblem reports whether err is a configuration mistake (exit 78)
// rather than a transient failure (exit 1, systemd restarts keyd).
func IsConfigProblem(err error) bool {
	var c configProblem
	return errors.As(err, &c)
}
