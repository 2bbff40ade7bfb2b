package dbus

import (
	"errors"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/fault"
)

// The org.edgev2.Error family. Every method call gets either a reply or one
// of these, with a message that names the offending input.
const (
	ErrorPrefix          = fault.DBusErrorPrefix
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
	return NewError(fault.KindOf(err).DBusName(), fault.Message(err))
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
	return &fault.Error{Kind: fault.KindOfDBusName(de.Name), Msg: msg, Err: de}
}
