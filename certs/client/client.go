// Package client is the typed D-Bus client of the Certificates service.
package client

import (
	"context"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
)

const (
	busName   = "org.edgev2.Certificates1"
	rootPath  = godbus.ObjectPath("/org/edgev2/Certificates1")
	iface     = "org.edgev2.Certificates1"
	certIface = "org.edgev2.Certificates1.Certificate"
)

// Client talks to org.edgev2.Certificates1; errors are fault errors.
type Client struct{ conn *godbus.Conn }

// New uses an open bus connection.
func New(conn *godbus.Conn) *Client { return &Client{conn: conn} }

func (c *Client) call(ctx context.Context, path godbus.ObjectPath, method string, out []any, args ...any) error {
	if err := c.conn.Object(busName, path).CallWithContext(ctx, method, 0, args...).Store(out...); err != nil {
		return bus.FromError(err)
	}
	return nil
}

// Path is the object path of a certificate id.
func Path(id string) godbus.ObjectPath { return bus.ChildPath(rootPath, "certs", id) }

// Import stores a PEM chain.
func (c *Client) Import(ctx context.Context, id, pem string) error {
	var p godbus.ObjectPath
	return c.call(ctx, rootPath, iface+".ImportCertificate", []any{&p}, id, pem)
}

// Get returns a chain as PEM, leaf first.
func (c *Client) Get(ctx context.Context, id string) (string, error) {
	var pem string
	err := c.call(ctx, rootPath, iface+".GetCertificate", []any{&pem}, id)
	return pem, err
}

// List returns every certificate id.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.call(ctx, rootPath, iface+".ListCertificates", []any{&ids})
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
	opts := map[string]godbus.Variant{"issuer": godbus.MakeVariant(o.Issuer)}
	for k, v := range map[string]string{"key_id": o.KeyID, "issuer_cert": o.IssuerCert, "issuer_key": o.IssuerKey, "est_url": o.ESTURL, "est_label": o.ESTLabel} {
		if v != "" {
			opts[k] = godbus.MakeVariant(v)
		}
	}
	if o.Validity > 0 {
		opts["validity"] = godbus.MakeVariant(uint64(o.Validity / time.Second))
	}
	if o.CA {
		opts["ca"] = godbus.MakeVariant(true)
	}
	if o.PathLen != nil {
		opts["path_len"] = godbus.MakeVariant(*o.PathLen)
	}
	var pem string
	err := c.call(ctx, rootPath, iface+".CreateCertificate", []any{&pem}, id, csrDER, opts)
	return pem, err
}

// Ensure returns id, issuing it per policy if missing or due.
func (c *Client) Ensure(ctx context.Context, id string) (string, error) {
	var pem string
	err := c.call(ctx, rootPath, iface+".EnsureCertificate", []any{&pem}, id)
	return pem, err
}

// Delete deletes a stored certificate.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, rootPath, iface+".DeleteCertificate", nil, id)
}

// Renew renews id now.
func (c *Client) Renew(ctx context.Context, id string) error {
	return c.call(ctx, Path(id), certIface+".Renew", nil)
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
	if err := c.call(ctx, Path(id), "org.freedesktop.DBus.Properties.GetAll", []any{&m}, certIface); err != nil {
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
	p.ID, _ = m["Id"].Value().(string)
	p.Subject, _ = m["Subject"].Value().(string)
	p.Issuer, _ = m["Issuer"].Value().(string)
	p.Serial, _ = m["Serial"].Value().(string)
	p.Fingerprint, _ = m["Fingerprint"].Value().(string)
	p.Preloaded, _ = m["Preloaded"].Value().(bool)
	p.NotBefore, p.NotAfter, p.RenewAt = t("NotBefore"), t("NotAfter"), t("RenewAt")
	return p, nil
}
