package client

import (
	"context"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity/api"
)

// WatchIdentityChanged reports each IdentityChanged of the Identity
// service (the state or the device identity changed) until ctx ends, then
// closes the channel; it closes early when the connection is lost. Reports
// coalesce: a receiver reads the current state, not one per signal. The
// match is in place when it returns, so a change after it is not missed.
func (c *Client) WatchIdentityChanged(ctx context.Context) (<-chan struct{}, error) {
	match := []godbus.MatchOption{godbus.WithMatchSender(api.BusName), godbus.WithMatchObjectPath(api.ObjectPath),
		godbus.WithMatchInterface(api.Interface), godbus.WithMatchMember(api.SignalIdentityChanged)}
	sigs := make(chan *godbus.Signal, 16)
	c.conn.Signal(sigs)
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		c.conn.RemoveSignal(sigs)
		return nil, bus.FromError(err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer c.conn.RemoveSignal(sigs)
		defer c.conn.RemoveMatchSignal(match...)
		for {
			select {
			case <-ctx.Done():
				return
			case sig, ok := <-sigs:
				if !ok {
					return
				}
				if sig.Name != api.Interface+"."+api.SignalIdentityChanged || sig.Path != api.ObjectPath || !c.fromService(sig.Sender) {
					continue
				}
				select {
				case out <- struct{}{}:
				default: // one is pending already
				}
			}
		}
	}()
	return out, nil
}

// fromService tells whether sender owns the Identity service's name now:
// signals sent straight to this connection bypass the match rule.
func (c *Client) fromService(sender string) bool {
	var owner string
	return c.conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, api.BusName).Store(&owner) == nil && owner == sender
}
