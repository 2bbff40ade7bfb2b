package tpm

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
)

// KeyAlg is the algorithm of an IDevID or LDevID key.
type KeyAlg string

const (
	AlgECCP256 KeyAlg = "ecc"
	AlgRSA2048 KeyAlg = "rsa"
)

// ParseKeyAlg reads --alg.
func ParseKeyAlg(s string) (KeyAlg, error) {
	switch strings.ToLower(s) {
	case "", "ecc", "ec", "ec-p256", "ecc-p256":
		return AlgECCP256, nil
	case "rsa", "rsa-2048", "rsa2048":
		return AlgRSA2048, nil
	}
	return "", fault.New(fault.InvalidArgs, "key algorithm %q: use ecc (P-256) or rsa (2048)", s)
}

// devIDTemplate is a signing key per TCG "TPM 2.0 Keys for Device
// Identity and Attestation" (fixedTPM, fixedParent, sensitiveDataOrigin,
// userWithAuth, sign). ECC keys fix ECDSA-SHA256 as that profile does;
// RSA keys leave the scheme open so TLS 1.3 can ask for PSS and tpm2-pkcs11
// for PKCS#1 v1.5.
func devIDTemplate(alg KeyAlg, fixedScheme bool) tpm2.TPMTPublic {
	attrs := tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true}
	if alg == AlgRSA2048 {
		return tpm2.TPMTPublic{
			Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}
	}
	parms := &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		CurveID:   tpm2.TPMECCNistP256,
		KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}
	if fixedScheme {
		parms.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})}
	} else {
		parms.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
	}
	return tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, parms),
		Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// Identity is a device identity key persisted in the TPM.
type Identity struct {
	Handle tpm2.TPMHandle
	Public crypto.PublicKey
	Alg    KeyAlg
}

// readIdentity returns the key at h, ok=false if there is none.
func (t *TPM) readIdentity(h tpm2.TPMHandle) (*Identity, bool, error) {
	key, ok, err := t.readPublic(h)
	if err != nil || !ok {
		return nil, ok, err
	}
	pub := &key.Public
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, true, err
	}
	alg := AlgECCP256
	if pub.Type == tpm2.TPMAlgRSA {
		alg = AlgRSA2048
	}
	return &Identity{Handle: h, Public: k, Alg: alg}, true, nil
}

// IDevID returns the IDevID key at 0x81020000.
func (t *TPM) IDevID(ctx context.Context) (*Identity, error) {
	return t.identity(ctx, IDevIDHandle, "IDevID", "edgectl tpm idevid create")
}

// LDevID returns the LDevID key at 0x81000002.
func (t *TPM) LDevID(ctx context.Context) (*Identity, error) {
	return t.identity(ctx, LDevIDHandle, "LDevID", "edgectl tpm ldevid create")
}

func (t *TPM) identity(ctx context.Context, h tpm2.TPMHandle, what, fix string) (*Identity, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	id, ok, err := t.readIdentity(h)
	if err != nil {
		return nil, t.tpmError(err, fmt.Sprintf("read the %s at 0x%08x", what, uint32(h)), noHierarchy)
	}
	if !ok {
		return nil, fault.New(fault.NotFound, "%s has no %s at 0x%08x; create it: %s", t.Where(), what, uint32(h), fix)
	}
	return id, nil
}

// CreateIDevID creates the IDevID: a signing key under a storage primary
// of the endorsement hierarchy (TCG ECC SRK template, re-derivable from
// the endorsement seed), persisted at 0x81020000. An existing IDevID is
// returned with created=false unless force, which replaces it (and its
// certificate no longer matches: set a new one).
func (t *TPM) CreateIDevID(ctx context.Context, alg KeyAlg, force bool) (id *Identity, created bool, err error) {
	return t.createDevID(ctx, "IDevID", IDevIDHandle, alg, force, endorsement, nil)
}

// LDevIDBlobs are the TPM-wrapped public and private parts of the LDevID
// as TPM2_Create returned them (tpm2-tools format), which tpm2_ptool link
// needs: a persistent key cannot be exported again.
type LDevIDBlobs struct{ Public, Private []byte }

// CreateLDevID ensures the SRK at 0x81000001 and creates the LDevID under
// it, persisted at 0x81000002; its blobs are written to blobDir
// (ldevid.pub, ldevid.priv, 0600) for the link into tpm2-pkcs11.
func (t *TPM) CreateLDevID(ctx context.Context, alg KeyAlg, force bool, blobDir string) (*Identity, bool, error) {
	if blobDir == "" {
		return nil, false, fault.New(fault.InvalidArgs, "the LDevID needs a directory for its key blobs (--blobs DIR)")
	}
	var blobs LDevIDBlobs
	id, created, err := t.createDevID(ctx, "LDevID", LDevIDHandle, alg, force, ownerH, &blobs)
	if err != nil || !created {
		return id, created, err
	}
	if err := os.MkdirAll(blobDir, 0o700); err != nil {
		return nil, false, fault.Wrap(fault.Failed, err, "make %s: %v", blobDir, err)
	}
	for name, data := range map[string][]byte{"ldevid.pub": blobs.Public, "ldevid.priv": blobs.Private} {
		if err := atomicfile.WriteFile(filepath.Join(blobDir, name), data, 0o600); err != nil {
			return nil, false, fault.Wrap(fault.Failed, err, "write %s: %v", filepath.Join(blobDir, name), err)
		}
	}
	return id, true, nil
}

func (t *TPM) createDevID(ctx context.Context, what string, h tpm2.TPMHandle, alg KeyAlg, force bool, parentH hierarchy, blobs *LDevIDBlobs) (*Identity, bool, error) {
	if err := t.lock(ctx); err != nil {
		return nil, false, err
	}
	defer t.mu.Unlock()
	old, exists, err := t.readIdentity(h)
	if err != nil {
		return nil, false, t.tpmError(err, fmt.Sprintf("read the %s at 0x%08x", what, uint32(h)), noHierarchy)
	}
	if exists && !force {
		return old, false, nil
	}
	var parent tpm2.AuthHandle
	if parentH == endorsement {
		rsp, err := tpm2.CreatePrimary{PrimaryHandle: t.endorsement(), InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(t.t)
		if err != nil {
			return nil, false, t.tpmError(err, "create the endorsement hierarchy's storage primary (parent of the IDevID)", endorsement)
		}
		defer t.flush(rsp.ObjectHandle)
		parent = tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}
	} else {
		srk, err := t.ensureSRK()
		if err != nil {
			return nil, false, err
		}
		parent = tpm2.AuthHandle{Handle: SRKHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	}
	crsp, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(devIDTemplate(alg, blobs == nil))}.Execute(t.t)
	if err != nil {
		return nil, false, t.tpmError(err, "create the "+what+" key", noHierarchy)
	}
	lrsp, err := tpm2.Load{ParentHandle: parent, InPrivate: crsp.OutPrivate, InPublic: crsp.OutPublic}.Execute(t.t)
	if err != nil {
		return nil, false, t.tpmError(err, "load the new "+what+" key", noHierarchy)
	}
	defer t.flush(lrsp.ObjectHandle)
	if exists {
		if err := t.evict(h); err != nil {
			return nil, false, err
		}
	}
	if err := t.evictControl(lrsp.ObjectHandle, lrsp.Name, h); err != nil {
		return nil, false, t.tpmError(err, fmt.Sprintf("persist the %s at 0x%08x", what, uint32(h)), ownerH)
	}
	if blobs != nil {
		blobs.Public = tpm2.Marshal(crsp.OutPublic)
		blobs.Private = tpm2.Marshal(crsp.OutPrivate)
	}
	id, ok, err := t.readIdentity(h)
	if err != nil || !ok {
		return nil, false, t.tpmError(errors.Join(err, errors.New("not found after EvictControl")), "read the new "+what, noHierarchy)
	}
	return id, true, nil
}

// evict removes the persistent object at h.
func (t *TPM) evict(h tpm2.TPMHandle) error {
	k, ok, err := t.readPublic(h)
	if err != nil {
		return t.tpmError(err, fmt.Sprintf("read 0x%08x", uint32(h)), noHierarchy)
	}
	if !ok {
		return nil
	}
	return t.tpmError(t.evictControl(h, k.Name, h), fmt.Sprintf("remove the persistent object at 0x%08x", uint32(h)), ownerH)
}

// IDevIDCert reads the IDevID certificate from NV 0x01C90000.
func (t *TPM) IDevIDCert(ctx context.Context) (*x509.Certificate, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	der, ok, err := t.nvRead(IDevIDCertNV)
	if err != nil {
		return nil, t.tpmError(err, "read the IDevID certificate from NV 0x01c90000", noHierarchy)
	}
	if !ok {
		return nil, fault.New(fault.NotFound, "%s has no IDevID certificate in NV 0x01c90000; have the IDevID CSR signed (edgectl tpm idevid csr) and store the certificate: edgectl tpm idevid set-cert FILE", t.Where())
	}
	cert, err := x509.ParseCertificate(trimDER(der))
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "NV 0x01c90000 does not hold an X.509 certificate: %v; replace it: edgectl tpm idevid set-cert --force FILE", err)
	}
	return cert, nil
}

// SetIDevIDCert stores cert in NV 0x01C90000 after checking it certifies
// the IDevID key. An existing certificate is replaced only with force.
func (t *TPM) SetIDevIDCert(ctx context.Context, cert *x509.Certificate, force bool) error {
	id, err := t.IDevID(ctx)
	if err != nil {
		return err
	}
	if !samePublic(id.Public, cert.PublicKey) {
		return fault.New(fault.InvalidArgs, "the certificate (subject %q) is not for the IDevID key at 0x81020000: its public key differs", cert.Subject.String())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.nvStore(IDevIDCertNV, cert.Raw, force); err != nil {
		if errors.Is(err, errExists) {
			return fault.Wrap(fault.AlreadyExists, err, "NV 0x01c90000 already holds an IDevID certificate; pass --force to replace it")
		}
		return err
	}
	return nil
}
