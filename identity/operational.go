package identity

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/identity/dps"
)

// The DPS-issued operational certificate ([provisioning.attestation]
// operational_cert): identityd has Keys make a key pair, builds the CSR with
// a crypto.Signer over the bus (the private key never leaves Keys), sends it
// with the DPS registration, checks the issued certificate is for that key,
// stores it in Certificates under the configured id and from then on
// authenticates to the hub with it. Renewal registers again with a new key
// in the other of two key slots; the old key stays the device's until the
// new certificate is stored, so a failure or a kill -9 at any point leaves
// a stored certificate and the key it is for. Which slot is live is read
// from the stored certificate itself, not from a file that could disagree.

// Operational certificate states, reported by GetProvisioningInfo and
// `edgectl check`.
const (
	OpValid         = "valid"
	OpRenewing      = "renewing"
	OpRenewalFailed = "renewal-failed"
	OpExpired       = "expired"
)

// OperationalStatus is the operational certificate's state; it is cached
// with the identity so renewal resumes after a restart.
type OperationalStatus struct {
	CertID    string    `json:"cert_id"`
	KeyID     string    `json:"key_id"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	RenewAt   time.Time `json:"renew_at"`
	State     string    `json:"state"`
	// Failure names why the last renewal failed (dps-api-version-unsupported,
	// csr-refused, certificate-not-issued, certificate-for-another-key,
	// dps-unreachable, failed); LastError says it with the fix.
	Failure   string    `json:"failure,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	RetryAt   time.Time `json:"retry_at,omitzero"`
	Renewals  int       `json:"renewals"`
}

// operationalCert is the configured operational certificate, or nil.
func (s *Service) operationalCert() *config.OperationalCert {
	p := s.cfg.Provisioning
	if p.Source != "dps" || p.Attestation == nil {
		return nil
	}
	return p.Attestation.OperationalCert
}

// liveSlot returns the index (0 or 1) of the key slot the stored operational
// certificate is for, or -1 when none is stored or it is for neither key.
func (s *Service) liveSlot(ctx context.Context, oc *config.OperationalCert) (int, *x509.Certificate, error) {
	chain, err := s.certs.Get(ctx, oc.CertID)
	if fault.Is(err, fault.NotFound) {
		return -1, nil, nil
	}
	if err != nil {
		return -1, nil, fmt.Errorf("operational certificate %q: %w", oc.CertID, err)
	}
	for i, id := range oc.OperationalKeyIDs() {
		signer, err := s.keys.Signer(ctx, id)
		if fault.Is(err, fault.NotFound) {
			continue
		}
		if err != nil {
			// Not "no such key": Keys is away. Deciding which slot is free
			// now could delete the live key.
			return -1, nil, fmt.Errorf("operational key %q: %w", id, err)
		}
		if samePublicKey(chain[0].PublicKey, signer.Public()) {
			return i, chain[0], nil
		}
	}
	return -1, chain[0], nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// operationalCSR makes a new key in the slot that is not live and a CSR
// for it, subject CN=<registration id>.
func (s *Service) operationalCSR(ctx context.Context, oc *config.OperationalCert, registrationID string) (string, crypto.Signer, []byte, error) {
	live, _, err := s.liveSlot(ctx, oc)
	if err != nil {
		return "", nil, nil, err
	}
	keyID := oc.OperationalKeyIDs()[0]
	if live == 0 {
		keyID = oc.OperationalKeyIDs()[1]
	}
	// A new key for every certificate: drop what an earlier, unfinished
	// attempt left in this slot (never the live key: that is the other slot).
	if err := s.keys.DeleteKey(ctx, keyID); err != nil && !fault.Is(err, fault.NotFound) {
		return "", nil, nil, fmt.Errorf("clear operational key slot %q: %w", keyID, err)
	}
	if err := s.keys.CreateKeyPair(ctx, keyID, oc.KeyType); err != nil {
		return "", nil, nil, fmt.Errorf("make operational key %q (%s): %w", keyID, oc.KeyType, err)
	}
	signer, err := s.keys.Signer(ctx, keyID)
	if err != nil {
		return "", nil, nil, fmt.Errorf("operational key %q: %w", keyID, err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: registrationID}}, signer)
	if err != nil {
		return "", nil, nil, fmt.Errorf("sign the CSR with operational key %q: %w", keyID, err)
	}
	return keyID, signer, csr, nil
}

// storeOperational checks the issued chain against the key identityd made,
// then stores the trust bundle and the chain, and only then drops the
// previous key. Nothing is stored when the certificate is not for the key.
func (s *Service) storeOperational(ctx context.Context, oc *config.OperationalCert, keyID string, signer crypto.Signer, res *dps.Result) (*OperationalStatus, error) {
	if len(res.IssuedChain) == 0 {
		return nil, fault.Wrap(fault.Failed, dps.ErrNotIssued, "DPS issued no operational certificate (fix: link the enrollment to a credential policy)")
	}
	leaf := res.IssuedChain[0]
	if !samePublicKey(leaf.PublicKey, signer.Public()) {
		return nil, fault.Wrap(fault.Failed, dps.ErrWrongKey, "DPS issued a certificate that is not for operational key %q; nothing is stored", keyID)
	}
	if now := s.now(); now.After(leaf.NotAfter) {
		return nil, fault.New(fault.Failed, "DPS issued an operational certificate that expired at %s; nothing is stored (fix: check the clock and the credential policy's validity)", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(res.TrustBundle) > 0 {
		if err := s.certs.Import(ctx, oc.TrustBundleID, res.TrustBundle); err != nil {
			return nil, fmt.Errorf("store DPS's trust bundle as %q: %w", oc.TrustBundleID, err)
		}
	}
	if err := s.certs.Import(ctx, oc.CertID, res.IssuedChain); err != nil {
		return nil, fmt.Errorf("store the operational certificate as %q: %w", oc.CertID, err)
	}
	// The stored certificate is for the new key: the old one can go.
	for _, id := range oc.OperationalKeyIDs() {
		if id != keyID {
			if err := s.keys.DeleteKey(ctx, id); err != nil && !fault.Is(err, fault.NotFound) {
				s.log.Warn("cannot delete the previous operational key; it is replaced at the next renewal", "key_id", id, "err", err)
			}
		}
	}
	st := &OperationalStatus{CertID: oc.CertID, KeyID: keyID, Serial: leaf.SerialNumber.Text(16),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, State: OpValid}
	st.RenewAt = renewAt(leaf.NotBefore, leaf.NotAfter, oc.Threshold())
	s.log.Info("operational certificate stored", "cert_id", oc.CertID, "key_id", keyID, "serial", st.Serial,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "renew_at", st.RenewAt.UTC().Format(time.RFC3339))
	return st, nil
}

func renewAt(notBefore, notAfter time.Time, threshold float64) time.Time {
	return notBefore.Add(time.Duration(float64(notAfter.Sub(notBefore)) * threshold))
}

// failureName names an issuance failure for the state and `edgectl check`.
func failureName(err error) string {
	switch {
	case errors.Is(err, dps.ErrAPIVersion):
		return "dps-api-version-unsupported"
	case errors.Is(err, dps.ErrCSRRefused):
		return "csr-refused"
	case errors.Is(err, dps.ErrNotIssued):
		return "certificate-not-issued"
	case errors.Is(err, dps.ErrWrongKey):
		return "certificate-for-another-key"
	case fault.Is(err, fault.Unavailable):
		return "dps-unreachable"
	}
	return "failed"
}

// Operational returns the operational certificate's status, if configured.
func (s *Service) Operational() (OperationalStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.operationalCert() == nil || s.op == nil {
		return OperationalStatus{}, false
	}
	st := *s.op
	if st.State != OpRenewing && s.now().After(st.NotAfter) {
		st.State = OpExpired
	}
	return st, true
}

// nextRenewal is when Run should renew: the threshold, or the retry time
// after a failure; zero when there is nothing to renew.
func (s *Service) nextRenewal() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.operationalCert() == nil || s.op == nil || s.state != StateProvisioned {
		return time.Time{}
	}
	if !s.op.RetryAt.IsZero() {
		return s.op.RetryAt
	}
	return s.op.RenewAt
}

// renewOperational registers again with a new key. The device stays
// provisioned with its current certificate whatever happens; a failure is
// recorded with its name and retried with back-off.
func (s *Service) renewOperational(ctx context.Context) {
	s.prov.Lock()
	defer s.prov.Unlock()
	s.mu.Lock()
	if s.op == nil || s.state != StateProvisioned {
		s.mu.Unlock()
		return
	}
	s.op.State = OpRenewing
	certID := s.op.CertID
	s.mu.Unlock()
	s.changed()
	s.log.Info("renewing the operational certificate by registering again with DPS", "cert_id", certID)
	dev, info, err := s.provisionOnce(ctx)
	s.mu.Lock()
	if err != nil {
		if ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		delay := min(time.Second<<min(s.failedRenewals, 16), max(s.cfg.RetryMax(), time.Second))
		s.failedRenewals++
		s.op.State, s.op.Failure, s.op.LastError, s.op.RetryAt = OpRenewalFailed, failureName(err), fault.Message(err), s.now().Add(delay)
		s.saveCacheLocked()
		s.mu.Unlock()
		s.log.Error("operational certificate renewal failed; keeping the current certificate", "failure", failureName(err), "retry_in", delay, "err", err)
		s.changed()
		return
	}
	s.failedRenewals = 0
	if s.nextOp != nil {
		s.nextOp.Renewals = s.op.Renewals + 1
		s.op, s.nextOp = s.nextOp, nil
	}
	otherDevice := s.dev == nil || s.dev.HubHostname != dev.HubHostname || s.dev.DeviceID != dev.DeviceID
	if otherDevice {
		s.modules = map[string]Module{}
	}
	s.dev, s.info, s.fromCache = &dev, info, false
	if err := s.saveCacheLocked(); err != nil {
		s.log.Error("cannot write the identity cache", "err", err)
	}
	s.mu.Unlock()
	if otherDevice {
		s.revokeModuleSigner("provisioned as another device")
	}
	s.changed()
}

func (s *Service) changed() {
	if s.OnChange != nil {
		s.OnChange()
	}
}

// operationalKey picks the key the stored operational certificate is for:
// after a kill -9 between storing the certificate and writing the cache,
// the cache may still name the previous key.
func (s *Service) operationalKey(ctx context.Context, dev Device) (string, error) {
	oc := s.operationalCert()
	if oc == nil || dev.CertID != oc.CertID {
		return dev.KeyID, nil
	}
	live, leaf, err := s.liveSlot(ctx, oc)
	if err != nil {
		return "", err
	}
	if live < 0 {
		if leaf == nil {
			return "", fault.New(fault.NotFound, "operational certificate %q is not stored (fix: edgectl reprovision)", oc.CertID)
		}
		return "", fault.New(fault.Failed, "operational certificate %q is for neither operational key (fix: edgectl reprovision)", oc.CertID)
	}
	keyID := oc.OperationalKeyIDs()[live]
	if keyID != dev.KeyID {
		s.log.Info("operational key resolved from the stored certificate", "key_id", keyID, "cached_key_id", dev.KeyID)
		s.mu.Lock()
		if s.dev != nil && s.dev.CertID == oc.CertID {
			s.dev.KeyID = keyID
			if s.op != nil {
				s.op.KeyID = keyID
				if leaf.NotAfter.After(s.op.NotAfter) {
					s.op.Serial, s.op.NotBefore, s.op.NotAfter = leaf.SerialNumber.Text(16), leaf.NotBefore, leaf.NotAfter
					s.op.RenewAt = renewAt(leaf.NotBefore, leaf.NotAfter, oc.Threshold())
				}
			}
			s.saveCacheLocked()
		}
		s.mu.Unlock()
	}
	return keyID, nil
}
