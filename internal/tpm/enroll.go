package tpm

import (
	"context"
	"crypto/tls"
	"crypto/x509"

	"github.com/edgev2/edgev2/certs/est"
	"github.com/edgev2/edgev2/fault"
)

// EnrollOptions says where and as whom the LDevID is enrolled.
type EnrollOptions struct {
	URL          string // EST base, https://HOST/.well-known/est
	Label        string // optional EST CA label
	TrustAnchors *x509.CertPool
	Subject      CSRSubject
}

// EnrollLDevID is the first enrollment of the zero-touch flow: a CSR for
// the LDevID, signed in the TPM, sent to EST simpleenroll over mutual TLS
// with the IDevID (its certificate from NV 0x01C90000, its key signing the
// handshake in the TPM). It returns the issued chain, leaf first.
//
// It runs here, not in the Certificates service, because the IDevID lives
// in the endorsement hierarchy and tpm2-pkcs11 can only hold keys under
// its store's primary (the SRK): keyd cannot reach the IDevID.
func (t *TPM) EnrollLDevID(ctx context.Context, opt EnrollOptions) ([]*x509.Certificate, error) {
	idCert, err := t.IDevIDCert(ctx)
	if err != nil {
		return nil, err
	}
	idSigner, err := t.Signer(ctx, IDevIDHandle)
	if err != nil {
		return nil, err
	}
	if !samePublic(idSigner.Public(), idCert.PublicKey) {
		return nil, fault.New(fault.InvalidArgs, "the IDevID certificate in NV 0x01c90000 is not for the IDevID key at 0x81020000 (the key was recreated?); store its new certificate: edgectl tpm idevid set-cert --force FILE")
	}
	ldSigner, err := t.Signer(ctx, LDevIDHandle)
	if err != nil {
		return nil, fault.Wrap(fault.KindOf(err), err, "%s; create it: edgectl tpm ldevid create", fault.Message(err))
	}
	csr, err := CreateCSR(ldSigner, opt.Subject)
	if err != nil {
		return nil, err
	}
	client, err := est.New(est.Config{URL: opt.URL, Label: opt.Label, TrustAnchors: opt.TrustAnchors})
	if err != nil {
		return nil, err
	}
	chain, err := client.SimpleEnroll(ctx, est.Auth{ClientCert: &tls.Certificate{
		Certificate: [][]byte{idCert.Raw},
		PrivateKey:  idSigner,
		Leaf:        idCert,
	}}, csr)
	if err != nil {
		return nil, fault.Wrap(fault.KindOf(err), err, "enroll the LDevID over EST with the IDevID: %s", fault.Message(err))
	}
	if len(chain) == 0 || !samePublic(chain[0].PublicKey, ldSigner.Public()) {
		return nil, fault.New(fault.Failed, "the EST server's certificate is not for the LDevID key")
	}
	return chain, nil
}
