// Package client is the typed D-Bus client of the Identity service.
package client

import (
	"context"
	"os"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/identity/api"
)

// Client talks to org.edgev2.Identity1; errors are fault errors.
type Client struct{ conn *godbus.Conn }

// New uses an open bus connection.
func New(conn *godbus.Conn) *Client { return &Client{conn: conn} }

func (c *Client) call(ctx context.Context, method string, out []any, args ...any) error {
	if err := c.conn.Object(api.BusName, api.ObjectPath).CallWithContext(ctx, api.Interface+"."+method, 0, args...).Store(out...); err != nil {
		return bus.FromError(err)
	}
	return nil
}

// Dict is an a{sv} result with typed getters.
type Dict map[string]godbus.Variant

// S returns a string entry ("" if absent).
func (d Dict) S(k string) string { s, _ := d[k].Value().(string); return s }

// DeviceIdentity returns the device identity.
func (c *Client) DeviceIdentity(ctx context.Context) (Dict, error) {
	var d Dict
	err := c.call(ctx, "GetDeviceIdentity", []any{&d})
	return d, err
}

// ProvisioningInfo returns how the device was provisioned.
func (c *Client) ProvisioningInfo(ctx context.Context) (Dict, error) {
	var d Dict
	err := c.call(ctx, "GetProvisioningInfo", []any{&d})
	return d, err
}

// Reprovision provisions again now.
func (c *Client) Reprovision(ctx context.Context) error { return c.call(ctx, "Reprovision", nil) }

// CreateModule creates a module identity.
func (c *Client) CreateModule(ctx context.Context, id, managedBy string) (Dict, error) {
	opts := map[string]godbus.Variant{}
	if managedBy != "" {
		opts["managed_by"] = godbus.MakeVariant(managedBy)
	}
	var d Dict
	err := c.call(ctx, "CreateModuleIdentity", []any{&d}, id, opts)
	return d, err
}

// Module returns a module identity.
func (c *Client) Module(ctx context.Context, id string) (Dict, error) {
	var d Dict
	err := c.call(ctx, "GetModuleIdentity", []any{&d}, id)
	return d, err
}

// Modules lists module identities.
func (c *Client) Modules(ctx context.Context) ([]Dict, error) {
	var ds []Dict
	err := c.call(ctx, "ListModuleIdentities", []any{&ds})
	return ds, err
}

// UpdateModule re-registers a module's keys.
func (c *Client) UpdateModule(ctx context.Context, id, managedBy string) (Dict, error) {
	opts := map[string]godbus.Variant{}
	if managedBy != "" {
		opts["managed_by"] = godbus.MakeVariant(managedBy)
	}
	var d Dict
	err := c.call(ctx, "UpdateModuleIdentity", []any{&d}, id, opts)
	return d, err
}

// DeleteModule deletes a module identity.
func (c *Client) DeleteModule(ctx context.Context, id string) error {
	return c.call(ctx, "DeleteModuleIdentity", nil, id)
}

// SasToken returns a SAS token for the device ("") or a module.
func (c *Client) SasToken(ctx context.Context, module string, ttlS uint32) (string, error) {
	var tok string
	err := c.call(ctx, "GetSasToken", []any{&tok}, module, ttlS)
	return tok, err
}

// State reads the State property.
func (c *Client) State(ctx context.Context) (string, error) {
	var v godbus.Variant
	if err := c.conn.Object(api.BusName, api.ObjectPath).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, api.Interface, api.PropState).Store(&v); err != nil {
		return "", bus.FromError(err)
	}
	s, _ := v.Value().(string)
	return s, nil
}

// SignAsModule signs data with a module's derived key ("primary" or "secondary").
func (c *Client) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	var digest []byte
	err := c.call(ctx, "SignAsModule", []any{&digest}, module, key, data)
	return digest, err
}

// OpenModuleSigner returns a Keys session restricted to SignDerived on the
// module-key master, and that key's id (the Module Runtime only). The
// file is a capability; identityd revokes it when module identities change.
func (c *Client) OpenModuleSigner(ctx context.Context) (*os.File, string, error) {
	var fd godbus.UnixFD
	var d Dict
	if err := c.call(ctx, "OpenModuleSigner", []any{&fd, &d}, map[string]godbus.Variant{}); err != nil {
		return nil, "", err
	}
	return os.NewFile(uintptr(fd), "module-signer"), d.S("key_id"), nil
}

// ModuleSigning returns how the module signer signs for module now:
// generation_id, key_id, and the derivations "primary" and "secondary" (ay).
func (c *Client) ModuleSigning(ctx context.Context, module string) (Dict, error) {
	var d Dict
	err := c.call(ctx, "GetModuleSigning", []any{&d}, module, map[string]godbus.Variant{})
	return d, err
}
