package adapter

import (
	"context"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// SystemStopping reports whether systemd is shutting the system down
// (SystemState "stopping": a job of shutdown.target is queued or running),
// asked over systemd's private socket (root), which works while the bus is
// going down too. A plain `systemctl stop`/`restart` of modrtd, or an
// upgrade, leaves the system "running".
func SystemStopping(ctx context.Context) (bool, error) {
	c, err := sdbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	p, err := c.SystemStateContext(ctx)
	if err != nil {
		return false, err
	}
	state, _ := p.Value.Value().(string)
	return state == "stopping", nil
}
