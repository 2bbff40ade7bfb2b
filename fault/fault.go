// Package fault classifies errors by what the caller did wrong (or what went
// wrong for them), so adapters can map them to D-Bus or HTTP errors.
package fault

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is the class of a failure, as seen by the caller.
type Kind int

const (
	Failed        Kind = iota // internal failure; detail goes to the log only
	NotFound                  // the named entity does not exist
	AlreadyExists             // the named entity exists and cannot be replaced
	InvalidArgs               // the caller's input is wrong
	NotAuthorized             // the caller may not do this
	Unavailable               // a backend (token, cloud, service) cannot be reached now
	ReadOnly                  // the entity is managed by configuration, not by calls
	NotSupported              // the backend (a token) cannot do this; not the caller's mistake
)

var kindNames = map[Kind]string{
	Failed: "Failed", NotFound: "NotFound", AlreadyExists: "AlreadyExists",
	InvalidArgs: "InvalidArgs", NotAuthorized: "NotAuthorized",
	Unavailable: "Unavailable", ReadOnly: "ReadOnly", NotSupported: "NotSupported",
}

// String returns the kind's name as used in org.edgev2.Error.<Name>.
func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "Failed"
}

// Error is a failure whose message is safe to show to the caller.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause, for the log; never shown to callers
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// New makes a caller-facing error of the given kind.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap makes a caller-facing error of the given kind that keeps cause for the log.
func Wrap(k Kind, cause error, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// KindOf returns the kind of the first *Error in err's chain, or Failed.
func KindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return Failed
}

// Is reports whether err carries kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// Message returns the caller-facing text of err: the message of its first
// *Error, or a generic text for internal failures whose detail must stay in the log.
func Message(err error) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Msg
	}
	return "internal error; the service log has the details"
}

// Printable shortens untrusted text to 64 bytes and hides its control
// characters, so a message can quote it (a host name, a key someone wrote).
func Printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
