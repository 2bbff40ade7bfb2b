// Package client is the typed D-Bus client of the Identity service.
package client

import (
	"context"
	"os"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/api"
)

// Client talks to org.edgev2.Identity1; errors are fault errors.
type Client struct{ caller bus.Caller }

// New uses an open bus connection.
func New(conn *godbus.Conn) *Client {
	return &Client{caller: bus.Caller{Conn: conn, Dest: api.BusName}}
}

// call calls method of the Identity interface on the service's one object.
func (c *Client) call(ctx context.Context, method string, out []any, args ...any) error {
	return c.caller.Call(ctx, api.ObjectPath, api.Interface+"."+method, out, args...)
}

// callDict calls a method that returns one a{sv} and decodes it into out.
func (c *Client) callDict(ctx context.Context, method string, out any, args ...any) error {
	var d map[string]godbus.Variant
	if err := c.call(ctx, method, []any{&d}, args...); err != nil {
		return err
	}
	return decode(method, d, out)
}

func decode(method string, d map[string]godbus.Variant, out any) error {
	if err := api.FromDict(d, out); err != nil {
		return fault.Wrap(fault.Failed, err, "%s replied with a malformed dictionary: %v", method, err)
	}
	return nil
}

func managedByOpts(managedBy string) map[string]godbus.Variant {
	opts := map[string]godbus.Variant{}
	if managedBy != "" {
		opts[api.OptManagedBy] = godbus.MakeVariant(managedBy)
	}
	return opts
}

// DeviceIdentity returns the device identity.
func (c *Client) DeviceIdentity(ctx context.Context) (api.DeviceIdentity, error) {
	var d api.DeviceIdentity
	err := c.callDict(ctx, api.MethodGetDeviceIdentity, &d)
	return d, err
}

// ProvisioningInfo returns how the device was provisioned.
func (c *Client) ProvisioningInfo(ctx context.Context) (api.ProvisioningInfo, error) {
	var d api.ProvisioningInfo
	err := c.callDict(ctx, api.MethodGetProvisioningInfo, &d)
	return d, err
}

// Reprovision provisions again now.
func (c *Client) Reprovision(ctx context.Context) error {
	return c.call(ctx, api.MethodReprovision, nil)
}

// CreateModule creates a module identity.
func (c *Client) CreateModule(ctx context.Context, id, managedBy string) (api.ModuleIdentity, error) {
	var m api.ModuleIdentity
	err := c.callDict(ctx, api.MethodCreateModuleIdentity, &m, id, managedByOpts(managedBy))
	return m, err
}

// Module returns a module identity.
func (c *Client) Module(ctx context.Context, id string) (api.ModuleIdentity, error) {
	var m api.ModuleIdentity
	err := c.callDict(ctx, api.MethodGetModuleIdentity, &m, id)
	return m, err
}

// Modules lists module identities.
func (c *Client) Modules(ctx context.Context) ([]api.ModuleIdentity, error) {
	var ds []map[string]godbus.Variant
	if err := c.call(ctx, api.MethodListModuleIdentities, []any{&ds}); err != nil {
		return nil, err
	}
	out := make([]api.ModuleIdentity, len(ds))
	for i, d := range ds {
		if err := decode(api.MethodListModuleIdentities, d, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// UpdateModule re-registers a module's keys.
func (c *Client) UpdateModule(ctx context.Context, id, managedBy string) (api.ModuleIdentity, error) {
	var m api.ModuleIdentity
	err := c.callDict(ctx, api.MethodUpdateModuleIdentity, &m, id, managedByOpts(managedBy))
	return m, err
}

// DeleteModule deletes a module identity.
func (c *Client) DeleteModule(ctx context.Context, id string) error {
	return c.call(ctx, api.MethodDeleteModuleIdentity, nil, id)
}

// SasToken returns a SAS token for the device ("") or a module.
func (c *Client) SasToken(ctx context.Context, module string, ttlS uint32) (string, error) {
	var tok string
	err := c.call(ctx, api.MethodGetSasToken, []any{&tok}, module, ttlS)
	return tok, err
}

// CallerIdentity returns the caller's [[principal]] (and module identity).
func (c *Client) CallerIdentity(ctx context.Context) (api.CallerIdentity, error) {
	var ci api.CallerIdentity
	err := c.callDict(ctx, api.MethodGetCallerIdentity, &ci)
	return ci, err
}

// State reads the State property.
func (c *Client) State(ctx context.Context) (string, error) {
	var v godbus.Variant
	if err := c.caller.Call(ctx, api.ObjectPath, "org.freedesktop.DBus.Properties.Get", []any{&v}, api.Interface, api.PropState); err != nil {
		return "", err
	}
	s, _ := v.Value().(string)
	return s, nil
}

// SignAsModule signs data with a module's derived key ("primary" or "secondary").
func (c *Client) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	var digest []byte
	err := c.call(ctx, api.MethodSignAsModule, []any{&digest}, module, key, data)
	return digest, err
}

// OpenModuleSigner returns a Keys session restricted to SignDerived on the
// module-key master, and that key's id (the Module Runtime only). The
// file is a capability; identityd revokes it when module identities change.
func (c *Client) OpenModuleSigner(ctx context.Context) (*os.File, string, error) {
	var fd godbus.UnixFD
	var d map[string]godbus.Variant
	if err := c.call(ctx, api.MethodOpenModuleSigner, []any{&fd, &d}, map[string]godbus.Variant{}); err != nil {
		return nil, "", err
	}
	f := os.NewFile(uintptr(fd), "module-signer")
	var s api.ModuleSigner
	if err := decode(api.MethodOpenModuleSigner, d, &s); err != nil {
		f.Close()
		return nil, "", err
	}
	return f, s.KeyID, nil
}

// ModuleSigning returns how the module signer signs for module now: its
// generation, the master key and the derivations of its primary and
// secondary keys.
func (c *Client) ModuleSigning(ctx context.Context, module string) (api.ModuleSigning, error) {
	var ms api.ModuleSigning
	err := c.callDict(ctx, api.MethodGetModuleSigning, &ms, module, map[string]godbus.Variant{})
	return ms, err
}
