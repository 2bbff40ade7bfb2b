package dbus

import (
	"context"
	"fmt"

	godbus "github.com/godbus/dbus/v5"
)

// Caller is the plumbing the services' clients share: calls on one bus
// name with a context, whose D-Bus errors come back as fault errors
// (FromError: org.edgev2.Error.NotFound is fault.NotFound, a service that is
// not running is fault.Unavailable...), so a program using a client matches
// error kinds with fault.Is and never D-Bus error names.
//
// A client holds one and keeps only its typed methods:
//
//	type Client struct{ bus.Caller }
//
//	func New(conn *godbus.Conn) *Client {
//		return &Client{bus.Caller{Conn: conn, Dest: api.BusName}}
//	}
//
//	func (c *Client) Delete(ctx context.Context, id string) error {
//		return c.Call(ctx, api.ObjectPath, api.Interface+".DeleteCertificate", nil, id)
//	}
//
//	// Watch… methods deliver a service's signals:
//	func (c *Client) WatchRenewed(ctx context.Context) (<-chan *godbus.Signal, error) {
//		return c.Watch(ctx, api.CertInterface, "Renewed")
//	}
type Caller struct {
	Conn *godbus.Conn
	Dest string // the service's bus name
	// Interactive lets polkit ask the user (through an agent) during calls.
	Interactive bool
}

// WithInteractive is a copy of c whose calls allow interactive authorization.
func (c Caller) WithInteractive(on bool) Caller {
	c.Interactive = on
	return c
}

// Call calls method (interface.Member) on the object at path and stores the
// reply in out (pointers, as godbus's Store). It gives up when ctx ends.
// Errors are fault errors.
func (c Caller) Call(ctx context.Context, path godbus.ObjectPath, method string, out []any, args ...any) error {
	var flags godbus.Flags
	if c.Interactive {
		flags |= godbus.FlagAllowInteractiveAuthorization
	}
	if err := c.Conn.Object(c.Dest, path).CallWithContext(ctx, method, flags, args...).Store(out...); err != nil {
		return FromError(err)
	}
	return nil
}

// Property reads property iface.name of the object at path into out.
func (c Caller) Property(ctx context.Context, path godbus.ObjectPath, iface, name string, out any) error {
	var v godbus.Variant
	if err := c.Call(ctx, path, "org.freedesktop.DBus.Properties.Get", []any{&v}, iface, name); err != nil {
		return err
	}
	if err := v.Store(out); err != nil {
		return fmt.Errorf("property %s.%s of %s: %w", iface, name, path, err)
	}
	return nil
}

// Watch delivers the signals iface.member that the service (Dest) sends,
// from any of its objects, until ctx ends; then the channel is closed.
// Signals of that name from anyone else are not delivered, and a restarted
// service is followed. A signal that arrives while the channel is full is
// dropped: read it promptly.
func (c Caller) Watch(ctx context.Context, iface, member string) (<-chan *godbus.Signal, error) {
	rules := [][]godbus.MatchOption{
		{godbus.WithMatchSender(c.Dest), godbus.WithMatchInterface(iface), godbus.WithMatchMember(member)},
		{godbus.WithMatchSender("org.freedesktop.DBus"), godbus.WithMatchMember("NameOwnerChanged"), godbus.WithMatchArg(0, c.Dest)},
	}
	in := make(chan *godbus.Signal, 64)
	c.Conn.Signal(in)
	stop := func(added int) {
		for _, r := range rules[:added] {
			c.Conn.RemoveMatchSignal(r...)
		}
		c.Conn.RemoveSignal(in)
	}
	for i, r := range rules {
		if err := c.Conn.AddMatchSignalContext(ctx, r...); err != nil {
			stop(i)
			return nil, FromError(err)
		}
	}
	// Signals carry the service's unique name as their sender, not the
	// well-known name: it is read after the rule is in place, so no owner
	// change between goes unseen.
	var owner string
	if err := c.Conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, c.Dest).Store(&owner); err != nil {
		owner = "" // not running now; NameOwnerChanged tells when it starts
	}
	out := make(chan *godbus.Signal, 64)
	name := iface + "." + member
	go func() {
		defer close(out)
		defer stop(len(rules))
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-in:
				if !ok {
					return
				}
				switch {
				case s.Name == "org.freedesktop.DBus.NameOwnerChanged" && s.Sender == "org.freedesktop.DBus" && len(s.Body) == 3:
					if n, _ := s.Body[0].(string); n == c.Dest {
						owner, _ = s.Body[2].(string)
					}
				case s.Name == name && owner != "" && s.Sender == owner:
					select {
					case out <- s:
					default: // full: the reader is behind; drop this one
					}
				}
			}
		}
	}()
	return out, nil
}
