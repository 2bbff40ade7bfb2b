// Package client is the typed D-Bus client of the Certificates service.
package client

import (
	"context"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/certs/api"
	bus "github.com/edgev2/edgev2/dbus"
)

const (
	busName   = api.BusName
	rootPath  = godbus.ObjectPath(api.ObjectPath)
	iface     = api.Interface
	certIface = api.CertInterface
)

// Client talks to org.edgev2.Certificates1; errors are fault errors.
type Client struct{ caller bus.Caller }

// New uses an open bus connection.
func New(conn *godbus.Conn) *Client { return &Client{caller: bus.Caller{Conn: conn, Dest: busName}} }

// Path is the object path of a certificate id.
func Path(id string) godbus.ObjectPath { return bus.ChildPath(rootPath, api.Collection, id) }

// Import stores a PEM chain.
func (c *Client) Import(ctx context.Context, id, pem string) error {
	var p godbus.ObjectPath
	return c.caller.Call(ctx, rootPath, iface+"."+api.MethodImportCertificate, []any{&p}, id, pem)
}

// Get returns a chain as PEM, leaf first.
func (c *Client) Get(ctx context.Context, id string) (string, error) {
	var pem string
	err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodGetCertificate, []any{&pem}, id)
	return pem, err
}

// List returns every certificate id.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodListCertificates, []any{&ids})
	return ids, err
}

// CreateOptions are CreateCertificate's options. IssuerKey is only
// accepted when it names the key certd's configuration binds to IssuerCert;
// leave it out.
type CreateOptions struct {
	Issuer, KeyID, IssuerCert, IssuerKey, ESTURL, ESTLabel string
	Validity                                               time.Duration
	CA                                                     bool
	PathLen                                                *uint32 // with CA: the path length (nil: certd's default)
}

// Create issues a certificate for a DER CSR.
func (c *Client) Create(ctx context.Context, id string, csrDER []byte, o CreateOptions) (string, error) {
	opts := map[string]godbus.Variant{api.OptIssuer: godbus.MakeVariant(o.Issuer)}
	for k, v := range map[string]string{api.OptKeyID: o.KeyID, api.OptIssuerCert: o.IssuerCert, api.OptIssuerKey: o.IssuerKey, api.OptESTURL: o.ESTURL, api.OptESTLabel: o.ESTLabel} {
		if v != "" {
			opts[k] = godbus.MakeVariant(v)
		}
	}
	if o.Validity > 0 {
		opts[api.OptValidity] = godbus.MakeVariant(uint64(o.Validity / time.Second))
	}
	if o.CA {
		opts[api.OptCA] = godbus.MakeVariant(true)
	}
	if o.PathLen != nil {
		opts[api.OptPathLen] = godbus.MakeVariant(*o.PathLen)
	}
	var pem string
	err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodCreateCertificate, []any{&pem}, id, csrDER, opts)
	return pem, err
}

// Ensure returns id, issuing it per policy if missing or due.
func (c *Client) Ensure(ctx context.Context, id string) (string, error) {
	var pem string
	err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodEnsureCertificate, []any{&pem}, id)
	return pem, err
}

// Delete deletes a stored certificate.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.caller.Call(ctx, rootPath, iface+"."+api.MethodDeleteCertificate, nil, id)
}

// Renew renews id now.
func (c *Client) Renew(ctx context.Context, id string) error {
	return c.caller.Call(ctx, Path(id), certIface+"."+api.MethodRenew, nil)
}

// Properties of a certificate.
type Properties struct {
	ID, Subject, Issuer, Serial, Fingerprint string
	NotBefore, NotAfter, RenewAt             time.Time
	Preloaded                                bool
}

// Properties reads a certificate's properties.
func (c *Client) Properties(ctx context.Context, id string) (Properties, error) {
	var m map[string]godbus.Variant
	if err := c.caller.Call(ctx, Path(id), "org.freedesktop.DBus.Properties.GetAll", []any{&m}, certIface); err != nil {
		return Properties{}, err
	}
	t := func(k string) time.Time {
		v, _ := m[k].Value().(uint64)
		if v == 0 {
			return time.Time{}
		}
		return time.Unix(int64(v), 0)
	}
	var p Properties
	p.ID, _ = m[api.PropID].Value().(string)
	p.Subject, _ = m[api.PropSubject].Value().(string)
	p.Issuer, _ = m[api.PropIssuer].Value().(string)
	p.Serial, _ = m[api.PropSerial].Value().(string)
	p.Fingerprint, _ = m[api.PropFingerprint].Value().(string)
	p.Preloaded, _ = m[api.PropPreloaded].Value().(bool)
	p.NotBefore, p.NotAfter, p.RenewAt = t(api.PropNotBefore), t(api.PropNotAfter), t(api.PropRenewAt)
	return p, nil
}

// WatchRenewed calls renewed with the id of every certificate certd renews
// (signal Renewed), from one goroutine, until ctx is done. A signal counts
// only if it comes from the current owner of the service's name (bus.Caller's
// Watch): signals sent straight to this connection bypass match rules. It
// returns an error only when the match rule cannot be added.
func (c *Client) WatchRenewed(ctx context.Context, renewed func(id string)) error {
	sigs, err := c.caller.Watch(ctx, certIface, api.SignalRenewed)
	if err != nil {
		return err
	}
	prefix := string(rootPath) + "/" + api.Collection + "/"
	go func() {
		for sig := range sigs { // closed when ctx ends or the connection is lost
			elem, ok := strings.CutPrefix(string(sig.Path), prefix)
			if !ok {
				continue
			}
			if id, ok := bus.UnescapePathElement(elem); ok {
				renewed(id)
			}
		}
	}()
	return nil
}
