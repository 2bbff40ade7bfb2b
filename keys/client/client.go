// Package client is the typed D-Bus client of the Keys service, used by
// edgectl and the other edgev2 services.
package client

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/keys/api"
)

const (
	rootPath godbus.ObjectPath = api.ObjectPath
	// Member names as godbus takes them: interface "." method.
	propGet    = "org.freedesktop.DBus.Properties.Get"
	propGetAll = "org.freedesktop.DBus.Properties.GetAll"
)

// member is the full name of method on interface in.
func member(in, method string) string { return in + "." + method }

// Client talks to org.edgev2.Keys1. Errors are fault errors (match kinds
// with fault.Is).
type Client struct {
	caller bus.Caller
	sess   *sessionState // nil: everything over the bus
}

// New uses an open bus connection.
func New(conn *godbus.Conn) *Client {
	return &Client{caller: bus.Caller{Conn: conn, Dest: api.BusName}}
}

// Interactive makes calls allow interactive authorization (polkit may ask
// the user for a password through an agent).
func (c *Client) Interactive(on bool) *Client {
	cc := *c
	cc.caller.Interactive = on
	return &cc
}

func (c *Client) call(ctx context.Context, path godbus.ObjectPath, method string, out []any, args ...any) error {
	if c.sess != nil && isKeyMethod(method) {
		if err, handled := c.sessionCall(ctx, path, method, out, args...); handled {
			return err
		}
	}
	return c.caller.Call(ctx, path, method, out, args...)
}

func noOptions() map[string]godbus.Variant { return map[string]godbus.Variant{} }

// Key is a handle on one key object.
type Key struct {
	c    *Client
	ID   string
	Path godbus.ObjectPath
}

// CreateKey makes (or finds) a symmetric key; usage is "sign" or "encrypt";
// value, if not nil, is imported.
func (c *Client) CreateKey(ctx context.Context, id, usage string, value []byte) (*Key, error) {
	opts := noOptions()
	if usage != "" {
		opts[api.OptUsage] = godbus.MakeVariant(usage)
	}
	if value != nil {
		opts[api.OptValue] = godbus.MakeVariant(value)
	}
	var p godbus.ObjectPath
	if err := c.call(ctx, rootPath, member(api.Interface, api.MethodCreateKey), []any{&p}, id, opts); err != nil {
		return nil, err
	}
	return &Key{c: c, ID: id, Path: p}, nil
}

// CreateKeyPair makes (or finds) a key pair of the first fitting type in
// algorithms ("ec-p256:rsa-2048:*").
func (c *Client) CreateKeyPair(ctx context.Context, id, algorithms string) (*Key, error) {
	var p godbus.ObjectPath
	if err := c.call(ctx, rootPath, member(api.Interface, api.MethodCreateKeyPair), []any{&p}, id, algorithms, noOptions()); err != nil {
		return nil, err
	}
	return &Key{c: c, ID: id, Path: p}, nil
}

// GetKey finds a key.
func (c *Client) GetKey(ctx context.Context, id string) (*Key, error) {
	var p godbus.ObjectPath
	if err := c.call(ctx, rootPath, member(api.Interface, api.MethodGetKey), []any{&p}, id); err != nil {
		return nil, err
	}
	return &Key{c: c, ID: id, Path: p}, nil
}

// Key returns a handle for id without a round trip (its path is computed).
func (c *Client) Key(id string) *Key {
	return &Key{c: c, ID: id, Path: bus.ChildPath(rootPath, api.Collection, id)}
}

// ListKeys returns every key id.
func (c *Client) ListKeys(ctx context.Context) ([]string, error) {
	var ids []string
	err := c.call(ctx, rootPath, member(api.Interface, api.MethodListKeys), []any{&ids})
	return ids, err
}

// DeleteKey deletes a stored key.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.call(ctx, rootPath, member(api.Interface, api.MethodDeleteKey), nil, id)
}

// MoveKey renames a stored key, replacing any key under to.
func (c *Client) MoveKey(ctx context.Context, from, to string) error {
	return c.call(ctx, rootPath, member(api.Interface, api.MethodMoveKey), nil, from, to)
}

// Engine returns the Engine property.
func (c *Client) Engine(ctx context.Context) (string, error) {
	var v godbus.Variant
	if err := c.call(ctx, rootPath, propGet, []any{&v}, api.Interface, api.PropEngine); err != nil {
		return "", err
	}
	s, _ := v.Value().(string)
	return s, nil
}

// TokenMechanisms returns the TokenMechanisms property: the CKM_* names the
// PKCS#11 base token offers (empty for the file engine).
func (c *Client) TokenMechanisms(ctx context.Context) ([]string, error) {
	var v godbus.Variant
	if err := c.call(ctx, rootPath, propGet, []any{&v}, api.Interface, api.PropTokenMechanisms); err != nil {
		return nil, err
	}
	s, _ := v.Value().([]string)
	return s, nil
}

// Properties describe a key.
type Properties = api.KeyProperties

// Properties reads all properties of the key.
func (k *Key) Properties(ctx context.Context) (Properties, error) {
	var m map[string]godbus.Variant
	if err := k.c.call(ctx, k.Path, propGetAll, []any{&m}, api.KeyInterface); err != nil {
		return Properties{}, err
	}
	var p Properties
	p.ID, _ = m[api.PropID].Value().(string)
	p.Type, _ = m[api.PropType].Value().(string)
	p.Location, _ = m[api.PropLocation].Value().(string)
	p.PublicKeyDER, _ = m[api.PropPublicKey].Value().([]byte)
	p.Mechanisms, _ = m[api.PropMechanisms].Value().([]string)
	p.Preloaded, _ = m[api.PropPreloaded].Value().(bool)
	return p, nil
}

// PublicKey parses the key's PublicKey property.
func (k *Key) PublicKey(ctx context.Context) (crypto.PublicKey, error) {
	p, err := k.Properties(ctx)
	if err != nil {
		return nil, err
	}
	if len(p.PublicKeyDER) == 0 {
		return nil, fmt.Errorf("key %q is symmetric and has no public key", k.ID)
	}
	return x509.ParsePKIXPublicKey(p.PublicKeyDER)
}

// Sign signs data with mechanism.
func (k *Key) Sign(ctx context.Context, mechanism string, data []byte) ([]byte, error) {
	var sig []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodSign), []any{&sig}, mechanism, data, noOptions())
	return sig, err
}

// Verify checks a signature.
func (k *Key) Verify(ctx context.Context, mechanism string, data, sig []byte) (bool, error) {
	var ok bool
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodVerify), []any{&ok}, mechanism, data, sig, noOptions())
	return ok, err
}

func cipherOpts(iv, aad []byte) map[string]godbus.Variant {
	opts := noOptions()
	if iv != nil {
		opts[api.OptIV] = godbus.MakeVariant(iv)
	}
	if aad != nil {
		opts[api.OptAAD] = godbus.MakeVariant(aad)
	}
	return opts
}

// Encrypt encrypts; iv and aad are for aes-256-gcm (nil iv: a random one is
// made and put in front of the result).
func (k *Key) Encrypt(ctx context.Context, mechanism string, plaintext, iv, aad []byte) ([]byte, error) {
	var out []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodEncrypt), []any{&out}, mechanism, plaintext, cipherOpts(iv, aad))
	return out, err
}

// Decrypt reverses Encrypt.
func (k *Key) Decrypt(ctx context.Context, mechanism string, ciphertext, iv, aad []byte) ([]byte, error) {
	var out []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodDecrypt), []any{&out}, mechanism, ciphertext, cipherOpts(iv, aad))
	return out, err
}

// SignDerived signs with HMAC-SHA256 under the key derived from this master key.
func (k *Key) SignDerived(ctx context.Context, derivation []byte, data []byte) ([]byte, error) {
	var out []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodSignDerived), []any{&out}, derivation, api.MechHMACSHA256, data)
	return out, err
}

// ExportDerived returns the derived key bytes.
func (k *Key) ExportDerived(ctx context.Context, derivation []byte) ([]byte, error) {
	var out []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodExportDerived), []any{&out}, derivation)
	return out, err
}

// EncryptDerived encrypts with aes-256-gcm under the key derived from this
// master key for derivation (build it with keys/derivation); iv and aad as
// for Encrypt. The derived key stays in the Keys service.
func (k *Key) EncryptDerived(ctx context.Context, derivation, plaintext, iv, aad []byte) ([]byte, error) {
	var out []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodEncryptDerived), []any{&out}, derivation, api.MechAES256GCM, plaintext, cipherOpts(iv, aad))
	return out, err
}

// DecryptDerived reverses EncryptDerived.
func (k *Key) DecryptDerived(ctx context.Context, derivation, ciphertext, iv, aad []byte) ([]byte, error) {
	var out []byte
	err := k.c.call(ctx, k.Path, member(api.KeyInterface, api.MethodDecryptDerived), []any{&out}, derivation, api.MechAES256GCM, ciphertext, cipherOpts(iv, aad))
	return out, err
}
