package client

import (
	"context"

	"github.com/edgev2/edgev2/identity/api"
)

// WatchIdentityChanged reports each IdentityChanged of the Identity
// service (the state or the device identity changed) until ctx ends, then
// closes the channel; it closes early when the connection is lost. Reports
// coalesce: a receiver reads the current state, not one per signal. The
// match is in place when it returns, so a change after it is not missed.
func (c *Client) WatchIdentityChanged(ctx context.Context) (<-chan struct{}, error) {
	// Watch delivers only the signals of the name's current owner: signals
	// sent straight to this connection bypass the match rule.
	sigs, err := c.caller.Watch(ctx, api.Interface, api.SignalIdentityChanged)
	if err != nil {
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for sig := range sigs { // closed when ctx ends or the connection is lost
			if sig.Path != api.ObjectPath {
				continue
			}
			select {
			case out <- struct{}{}:
			default: // one is pending already
			}
		}
	}()
	return out, nil
}
