package ctrd

import (
	"context"
	"net/netip"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// Network is the default network the runtime joins modules to at each
// start (modrt.Network, a CNI bridge).
type Network interface {
	Name() string
	// Attach joins the task with init pid to the network, publishing ports.
	Attach(ctx context.Context, module string, pid uint32, ports []modspec.PortMapping) (netip.Addr, error)
	// Adopt takes over the attachment of a task that ran before this
	// process; checkErr says what is wrong with it when it is broken.
	Adopt(ctx context.Context, module string, pid uint32, ports []modspec.PortMapping) (addr netip.Addr, checkErr, err error)
	// Detach releases the module's address and ports.
	Detach(ctx context.Context, module string, ports []modspec.PortMapping) error
	// Leased names the modules holding an address.
	Leased() ([]string, error)
}

// Network modes a module is in (recorded in its container's labels; the
// names modrt's spec uses).
const (
	netModeDefault = "default"
	netModeHost    = "host"
	netModeNone    = "none"
)
