package main

import (
	"context"
	"crypto"

	"github.com/edgev2/edgev2/certs"
	keys "github.com/edgev2/edgev2/keys/client"
)

// keyStore gives certd's domain the Keys service as crypto.Signers.
type keyStore struct{ c *keys.Client }

var _ certs.KeyStore = keyStore{}

func (k keyStore) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	key, err := k.c.GetKey(ctx, id)
	if err != nil {
		return nil, err
	}
	return key.Signer(ctx)
}

func (k keyStore) CreateKeyPair(ctx context.Context, id, algorithms string) (crypto.Signer, error) {
	key, err := k.c.CreateKeyPair(ctx, id, algorithms)
	if err != nil {
		return nil, err
	}
	return key.Signer(ctx)
}

func (k keyStore) MoveKey(ctx context.Context, from, to string) error {
	return k.c.MoveKey(ctx, from, to)
}
func (k keyStore) DeleteKey(ctx context.Context, id string) error { return k.c.DeleteKey(ctx, id) }
