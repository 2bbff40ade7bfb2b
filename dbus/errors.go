package dbus

import (
	"errors"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/fault"
)

// The org.edgev2.Error family. Every method call gets either a reply or one
// of these, with a message that names the offending input.
const (
	ErrorPrefix          = "org.edgev2.Error."
	ErrNotFound          = ErrorPrefix + "NotFound"
	ErrAlreadyExists     = ErrorPrefix + "AlreadyExists"
	ErrInvalidArgs       = ErrorPrefix + "InvalidArgs"
	ErrNotAuthorized     = ErrorPrefix + "NotAuthorized"
	ErrUnavailable       = ErrorPrefix + "Unavailable"
	ErrFailed            = ErrorPrefix + "Failed"
	ErrReadOnly          = ErrorPrefix + "ReadOnly"
	ErrNotSupported      = ErrorPrefix + "NotSupported" // the backend (a token) lacks a mechanism
	ErrInteractiveNeeded = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
)

// ErrAccessDenied: a capability (a restricted Keys session) does not cover
// the call; unlike NotAuthorized, no polkit rule changes that.
const ErrAccessDenied = ErrorPrefix + "AccessDenied"

// ErrNotConfigured: the service runs but has no configuration yet (before
// `edgectl config apply`); it answers every call with this error.
const ErrNotConfigured = ErrorPrefix + "NotConfigured"

// NewError makes a D-Bus error reply with a human message.
func NewError(name, msg string) *godbus.Error {
	return &godbus.Error{Name: name, Body: []any{msg}}
}

// ToError converts a domain error into the org.edgev2.Error.* reply. Only the
// caller-safe message of a fault.Error reaches the caller; anything else
// becomes Failed with a generic text (log the detail before calling this).
func ToError(err error) *godbus.Error {
	if err == nil {
		return nil
	}
	var de *godbus.Error
	if errors.As(err, &de) {
		return de
	}
	return NewError(ErrorPrefix+fault.KindOf(err).String(), fault.Message(err))
}

// FromError converts a D-Bus error reply received by a client back into a
// fault error, so clients can match kinds with fault.Is.
func FromError(err error) error {
	var de godbus.Error
	if errors.As(err, &de) {
		return fromDBusError(&de)
	}
	var dep *godbus.Error
	if errors.As(err, &dep) {
		return fromDBusError(dep)
	}
	return fault.Wrap(fault.Unavailable, err, "D-Bus call failed: %v", err)
}

func fromDBusError(de *godbus.Error) error {
	msg := de.Name
	if len(de.Body) > 0 {
		if s, ok := de.Body[0].(string); ok {
			msg = s
		}
	}
	kind := fault.Failed
	switch de.Name {
	case ErrNotFound, "org.freedesktop.DBus.Error.UnknownObject":
		kind = fault.NotFound
	case ErrAlreadyExists:
		kind = fault.AlreadyExists
	case ErrInvalidArgs, "org.freedesktop.DBus.Error.InvalidArgs":
		kind = fault.InvalidArgs
	case ErrNotAuthorized, ErrAccessDenied, ErrInteractiveNeeded, "org.freedesktop.DBus.Error.AccessDenied":
		kind = fault.NotAuthorized
	case ErrUnavailable, "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NoReply",
		"org.freedesktop.DBus.Error.NameHasNoOwner", "org.freedesktop.DBus.Error.Disconnected":
		kind = fault.Unavailable
	case ErrReadOnly:
		kind = fault.ReadOnly
	case ErrNotSupported, "org.freedesktop.DBus.Error.NotSupported":
		kind = fault.NotSupported
	case ErrNotConfigured:
		kind = fault.Unavailable
	}
	return &fault.Error{Kind: kind, Msg: msg, Err: de}
}
