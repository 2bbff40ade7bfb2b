package dbus

import (
	"fmt"

	godbus "github.com/godbus/dbus/v5"
)

// ConnectSystemBus opens a private connection to the system bus, or to the
// bus named by DBUS_SYSTEM_BUS_ADDRESS, so services can run against a private
// bus in tests and demos. The connection is not shared with other callers;
// opts are godbus's connection options.
func ConnectSystemBus(opts ...godbus.ConnOption) (*godbus.Conn, error) {
	conn, err := godbus.ConnectSystemBus(opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	return conn, nil
}
