package tpm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
)

// Signer is a crypto.Signer whose private key never leaves the TPM: each
// Sign is a TPM2_Sign with the persistent key. It shares the TPM's
// connection, so it is usable until the TPM is closed.
type Signer struct {
	t      *TPM
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	tpub   tpm2.TPMTPublic
	pub    crypto.PublicKey
	auth   []byte // the key's auth value (empty for the identity keys)
}

var _ crypto.Signer = (*Signer)(nil)

// Signer returns a signer for the persistent signing key at h.
func (t *TPM) Signer(ctx context.Context, h tpm2.TPMHandle) (*Signer, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	k, ok, err := t.readPublic(h)
	if err != nil {
		return nil, t.tpmError(err, fmt.Sprintf("read the key at 0x%08x", uint32(h)), noHierarchy)
	}
	if !ok {
		return nil, fault.New(fault.NotFound, "%s has no key at 0x%08x", t.Where(), uint32(h))
	}
	tpub, name := &k.Public, k.Name
	if !tpub.ObjectAttributes.SignEncrypt || tpub.ObjectAttributes.Restricted {
		return nil, fault.New(fault.InvalidArgs, "the key at 0x%08x is not an unrestricted signing key", uint32(h))
	}
	pub, err := tpm2.Pub(*tpub)
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "public key at 0x%08x: %v", uint32(h), err)
	}
	return &Signer{t: t, handle: h, name: name, tpub: *tpub, pub: pub}, nil
}

// Public implements crypto.Signer.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Sign implements crypto.Signer: ECDSA signatures come back ASN.1 DER,
// RSA ones as PKCS#1 v1.5 or, for *rsa.PSSOptions, PSS with a salt as
// long as the hash (what the TPM uses and TLS expects).
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	halg, err := hashAlg(h)
	if err != nil {
		return nil, err
	}
	if len(digest) != h.Size() {
		return nil, fault.New(fault.InvalidArgs, "digest is %d bytes, not the %d of %v", len(digest), h.Size(), h)
	}
	var scheme tpm2.TPMTSigScheme
	switch s.tpub.Type {
	case tpm2.TPMAlgECC:
		scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: halg})}
	case tpm2.TPMAlgRSA:
		alg := tpm2.TPMAlgRSASSA
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != h.Size() {
				return nil, fault.New(fault.InvalidArgs, "the TPM signs RSA-PSS with a salt as long as the hash, not %d bytes", pss.SaltLength)
			}
			alg = tpm2.TPMAlgRSAPSS
		}
		scheme = tpm2.TPMTSigScheme{Scheme: alg, Details: tpm2.NewTPMUSigScheme(alg, &tpm2.TPMSSchemeHash{HashAlg: halg})}
	default:
		return nil, fault.New(fault.InvalidArgs, "the key at 0x%08x is neither ECC nor RSA", uint32(s.handle))
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(s.auth)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   scheme,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.t.t)
	if err != nil {
		return nil, s.t.tpmError(err, fmt.Sprintf("sign with the key at 0x%08x", uint32(s.handle)), noHierarchy)
	}
	switch s.tpub.Type {
	case tpm2.TPMAlgECC:
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, err
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer)})
	default:
		if scheme.Scheme == tpm2.TPMAlgRSAPSS {
			sig, err := rsp.Signature.Signature.RSAPSS()
			if err != nil {
				return nil, err
			}
			return sig.Sig.Buffer, nil
		}
		sig, err := rsp.Signature.Signature.RSASSA()
		if err != nil {
			return nil, err
		}
		return sig.Sig.Buffer, nil
	}
}

func hashAlg(h crypto.Hash) (tpm2.TPMIAlgHash, error) {
	switch h {
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, nil
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, nil
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, nil
	}
	return 0, fault.New(fault.InvalidArgs, "the TPM signer takes SHA-256, SHA-384 or SHA-512 digests, not %v", h)
}

// CSRSubject is what an IDevID or LDevID CSR names: 802.1AR puts the
// device serial number in the subject's serialNumber attribute.
type CSRSubject struct {
	CommonName   string
	SerialNumber string
	Organization string
}

// CreateCSR makes a PKCS#10 CSR for the key s signs with, signed in the TPM.
func CreateCSR(s *Signer, subj CSRSubject) ([]byte, error) {
	if subj.CommonName == "" {
		return nil, fault.New(fault.InvalidArgs, "the CSR needs a common name (--cn), e.g. the device id")
	}
	name := pkix.Name{CommonName: subj.CommonName, SerialNumber: subj.SerialNumber}
	if subj.Organization != "" {
		name.Organization = []string{subj.Organization}
	}
	tmpl := &x509.CertificateRequest{Subject: name}
	if _, ok := s.pub.(*rsa.PublicKey); ok {
		tmpl.SignatureAlgorithm = x509.SHA256WithRSA
	} else {
		tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s)
	if err != nil {
		return nil, fault.Wrap(fault.KindOf(err), err, "make the CSR: %v", err)
	}
	return der, nil
}
