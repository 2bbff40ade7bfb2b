package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/fault"
	kclient "github.com/edgev2/edgev2/keys/client"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// quickstartCAID names the key (in Keys) and certificate (in Certificates)
// of the edge CA modrtd makes when none is configured.
const quickstartCAID = rtconfig.QuickstartEdgeCA

// edgeCA is the CA that issues modules' server and identity certificates:
// a configured one (certificate and key ids), or the quickstart CA, which
// modrtd makes, and renews with the same key and subject (so certificates
// it issued earlier still verify) once 80% of its lifetime has passed.
type edgeCA struct {
	certs      *cclient.Client
	keys       *kclient.Client
	certID     string
	keyID      string
	quickstart bool
	lifetime   time.Duration
	log        *slog.Logger

	mu sync.Mutex
}

func newEdgeCA(certs *cclient.Client, keys *kclient.Client, certID, keyID string, lifetime time.Duration, log *slog.Logger) *edgeCA {
	e := &edgeCA{certs: certs, keys: keys, certID: certID, keyID: keyID, lifetime: lifetime, log: log}
	if certID == "" {
		e.certID, e.keyID, e.quickstart = quickstartCAID, quickstartCAID, true
	}
	return e
}

// Ensure returns the CA's chain (CA first), making or renewing the
// quickstart CA when it is missing or due.
func (e *edgeCA) Ensure(ctx context.Context) ([]*x509.Certificate, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pemText, err := e.certs.Get(ctx, e.certID)
	if err != nil && !fault.Is(err, fault.NotFound) {
		return nil, err
	}
	var chain []*x509.Certificate
	if err == nil {
		if chain, err = certsapi.ParseChainPEM(pemText); err != nil {
			return nil, fmt.Errorf("edge CA certificate %q: %w", e.certID, err)
		}
	}
	if !e.quickstart {
		if chain == nil {
			return nil, fault.New(fault.NotFound, "the configured edge CA certificate %q is not in the Certificates service", e.certID)
		}
		return chain, nil
	}
	if chain != nil && !due(chain[0], time.Now()) {
		return chain, nil
	}
	return e.issue(ctx)
}

// due: past 80% of the lifetime, or not valid now.
func due(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.Before(c.NotBefore) || now.After(c.NotBefore.Add(life*4/5))
}

func (e *edgeCA) issue(ctx context.Context) ([]*x509.Certificate, error) {
	// CreateKeyPair returns the existing key if there is one: renewal
	// keeps the key, so earlier module certificates still verify.
	key, err := e.keys.CreateKeyPair(ctx, e.keyID, "ec-p256:rsa-2048:*")
	if err != nil {
		return nil, fmt.Errorf("quickstart edge CA key %q: %w", e.keyID, err)
	}
	signer, err := key.Signer(ctx)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "edgev2 Edge CA " + host}}, signer)
	if err != nil {
		return nil, fmt.Errorf("quickstart edge CA request: %w", err)
	}
	pemText, err := e.certs.Create(ctx, e.certID, csr, cclient.CreateOptions{
		Issuer: "self_signed", KeyID: e.keyID, CA: true, Validity: e.lifetime})
	if err != nil {
		return nil, fmt.Errorf("quickstart edge CA certificate: %w", err)
	}
	chain, err := certsapi.ParseChainPEM(pemText)
	if err != nil {
		return nil, err
	}
	e.log.Info("quickstart edge CA issued", "cert_id", e.certID, "not_after", chain[0].NotAfter)
	return chain, nil
}

// Keep renews the quickstart CA when due, checking hourly, until ctx ends.
func (e *edgeCA) Keep(ctx context.Context) {
	for {
		if _, err := e.Ensure(ctx); err != nil {
			e.log.Warn("edge CA not available yet", "cert_id", e.certID, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
