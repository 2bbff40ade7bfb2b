package dbus

import (
	"context"
	"fmt"
	"log/slog"

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
	// Log receives what Watch drops; nil is slog.Default().
	Log *slog.Logger
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
// Signals of that name from anyone else are not delivered (the sender must
// own Dest when the signal is looked at; see follow), none are delivered
// while nobody owns the name, and a restarted service is followed. The
// channel holds 64 signals; a reader that falls further behind loses the
// oldest (logged to Log), never the latest.
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
	out := make(chan *godbus.Signal, watchBuffer)
	go func() {
		defer close(out)
		defer stop(len(rules))
		c.follow(ctx, in, out, iface+"."+member, owner)
	}()
	return out, nil
}

// watchBuffer is how many signals a Watch channel holds for its reader.
const watchBuffer = 64

// maxNotOwners bounds the senders a Watch remembers as not owning the
// name; past it the memory starts over (each forger costs one more look).
const maxNotOwners = 256

// follow serves a Watch: it passes signals called name from in to out when
// their sender owns c.Dest, until ctx ends or in closes.
//
// It cannot trust the order of what it reads: godbus hands a full signal
// channel each further signal from a goroutine of its own, so under a
// flood (anyone may unicast signals to the client's connection) a
// restart's NameOwnerChanged pair can arrive swapped, and the new owner's
// first signal before either. NameOwnerChanged is therefore only a hint:
// a signal from anyone but the believed owner is settled by asking the bus
// who owns the name now (once per sender between owner changes, and once
// after each change), so a stale hint never lets a former owner through.
func (c Caller) follow(ctx context.Context, in <-chan *godbus.Signal, out chan *godbus.Signal, name, owner string) {
	notOwners := map[string]bool{}
	verified := true // owner is the bus's answer, not a NameOwnerChanged hint
	var dropped uint64
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
					verified = false
					clear(notOwners)
				}
			case s.Name == name && s.Sender != "":
				if s.Sender != owner || !verified {
					if notOwners[s.Sender] {
						continue
					}
					owner, verified = c.currentOwner(ctx), true
					if s.Sender != owner {
						if len(notOwners) >= maxNotOwners {
							clear(notOwners)
						}
						notOwners[s.Sender] = true
						continue
					}
				}
				dropped = c.push(out, s, dropped)
			}
		}
	}
}

// currentOwner is the unique name owning c.Dest, "" if none or unknown.
func (c Caller) currentOwner(ctx context.Context) string {
	var owner string
	if c.Conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, c.Dest).Store(&owner) != nil {
		return ""
	}
	return owner
}

// push puts s on out; when out is full (the reader is behind) it drops the
// oldest waiting signal instead, so the reader always gets the latest:
// the services' signals announce a change to re-read, and a missed older
// one is covered by a newer one. Drops are logged (the first, then every
// 1000th); dropped counts them.
func (c Caller) push(out chan *godbus.Signal, s *godbus.Signal, dropped uint64) uint64 {
	for {
		select {
		case out <- s:
			return dropped
		default:
		}
		select {
		case <-out:
			if dropped%1000 == 0 {
				log := c.Log
				if log == nil {
					log = slog.Default()
				}
				log.Warn("watch: the reader is behind; dropped the oldest waiting signal", "service", c.Dest, "signal", s.Name, "dropped", dropped+1)
			}
			dropped++
		default: // the reader took one meanwhile
		}
	}
}
