package ctrd

import (
	"context"
	"fmt"
	"net/netip"
)

// PortMapping is one published port, in the portmap plugin's
// portMappings capability shape.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// HostKey names the host side of p (protocol, address, port).
func (p PortMapping) HostKey() string {
	return fmt.Sprintf("%s/%s:%d", p.Protocol, p.HostIP, p.HostPort)
}

// Network is the default network the runtime joins modules to at each
// start (modrt.Network, a CNI bridge).
type Network interface {
	Name() string
	// Attach joins the task with init pid to the network, publishing ports.
	Attach(ctx context.Context, module string, pid uint32, ports []PortMapping) (netip.Addr, error)
	// Adopt takes over the attachment of a task that ran before this
	// process; checkErr says what is wrong with it when it is broken.
	Adopt(ctx context.Context, module string, pid uint32, ports []PortMapping) (addr netip.Addr, checkErr, err error)
	// Detach releases the module's address and ports.
	Detach(ctx context.Context, module string, ports []PortMapping) error
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
