package main

import (
	"context"
	"crypto"
	"crypto/x509"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/identity"
	kclient "github.com/edgev2/edgev2/keys/client"
)

// keysAdapter gives identityd's domain the Keys service.
type keysAdapter struct{ c *kclient.Client }

var _ identity.Keys = keysAdapter{}

func (k keysAdapter) Sign(ctx context.Context, id string, data []byte) ([]byte, error) {
	return k.c.Key(id).Sign(ctx, "hmac-sha256", data)
}

func (k keysAdapter) SignDerived(ctx context.Context, id string, derivation, data []byte) ([]byte, error) {
	return k.c.Key(id).SignDerived(ctx, derivation, data)
}

func (k keysAdapter) ExportDerived(ctx context.Context, id string, derivation []byte) ([]byte, error) {
	return k.c.Key(id).ExportDerived(ctx, derivation)
}

func (k keysAdapter) CreateKey(ctx context.Context, id, usage string, value []byte) error {
	_, err := k.c.CreateKey(ctx, id, usage, value)
	return err
}

func (k keysAdapter) DeleteKey(ctx context.Context, id string) error { return k.c.DeleteKey(ctx, id) }

func (k keysAdapter) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	key, err := k.c.GetKey(ctx, id)
	if err != nil {
		return nil, err
	}
	return key.Signer(ctx)
}

func (k keysAdapter) CreateKeyPair(ctx context.Context, id, algorithm string) error {
	_, err := k.c.CreateKeyPair(ctx, id, algorithm)
	return err
}

// certsAdapter gives identityd's domain the Certificates service.
type certsAdapter struct{ c *cclient.Client }

var _ identity.Certs = certsAdapter{}

func (c certsAdapter) Get(ctx context.Context, id string) ([]*x509.Certificate, error) {
	pem, err := c.c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return certsapi.ParseChainPEM(pem)
}

func (c certsAdapter) Ensure(ctx context.Context, id string) ([]*x509.Certificate, error) {
	pem, err := c.c.Ensure(ctx, id)
	if err != nil {
		return nil, err
	}
	return certsapi.ParseChainPEM(pem)
}

func (c certsAdapter) Import(ctx context.Context, id string, chain []*x509.Certificate) error {
	return c.c.Import(ctx, id, certsapi.EncodeChain(chain))
}
