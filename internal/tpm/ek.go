package tpm

import (
	"context"
	"crypto"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
	ekpkg "github.com/edgev2/edgev2/internal/tpm/ek"
)

// EKKind picks the RSA or the ECC endorsement key.
type EKKind string

const (
	EKRSA EKKind = "rsa"
	EKECC EKKind = "ecc"
)

// ParseEKKind reads --alg.
func ParseEKKind(s string) (EKKind, error) {
	switch strings.ToLower(s) {
	case "", "rsa":
		return EKRSA, nil
	case "ecc", "ec":
		return EKECC, nil
	}
	return "", fault.New(fault.InvalidArgs, "EK algorithm %q: use rsa or ecc", s)
}

func (k EKKind) certIndices() []tpm2.TPMHandle {
	if k == EKECC {
		return []tpm2.TPMHandle{ECCEKCertNV, ECCP384EKCertNV}
	}
	return []tpm2.TPMHandle{RSAEKCertNV}
}

// ReadEKCert reads the maker's EK certificate from its NV index.
func (t *TPM) ReadEKCert(ctx context.Context, kind EKKind) (*EKCert, tpm2.TPMHandle, error) {
	if err := t.lock(ctx); err != nil {
		return nil, 0, err
	}
	defer t.mu.Unlock()
	var tried []string
	for _, idx := range kind.certIndices() {
		der, ok, err := t.nvRead(idx)
		if err != nil {
			return nil, 0, t.tpmError(err, fmt.Sprintf("read the EK certificate from NV 0x%08x", uint32(idx)), noHierarchy)
		}
		if !ok {
			tried = append(tried, fmt.Sprintf("0x%08x", uint32(idx)))
			continue
		}
		ek, err := ParseEKCert(der)
		if err != nil {
			return nil, idx, fault.Wrap(fault.KindOf(err), err, "NV 0x%08x: %s", uint32(idx), fault.Message(err))
		}
		return ek, idx, nil
	}
	return nil, 0, fault.New(fault.NotFound, "%s has no %s EK certificate (NV %s is empty); the maker did not provision one: get it from the maker's EK certificate service, or try --alg %s", t.Where(), strings.ToUpper(string(kind)), strings.Join(tried, ", "), map[EKKind]string{EKRSA: "ecc", EKECC: "rsa"}[kind])
}

// EKPublic returns the TPM's endorsement key: the persistent one if the
// maker left it at its TCG handle, else the primary the TCG template (or,
// for RSA, the Azure IoT SDKs' template, when that is the key want names)
// derives from the endorsement seed (needs the endorsement auth).
func (t *TPM) EKPublic(ctx context.Context, kind EKKind, want crypto.PublicKey) (crypto.PublicKey, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	handles := []tpm2.TPMHandle{RSAEKHandle}
	templates := []tpm2.TPMTPublic{ekpkg.TCG.Public(), ekpkg.AzureSDK.Public()}
	if kind == EKECC {
		handles = []tpm2.TPMHandle{0x81010002, 0x81010016}
		templates = []tpm2.TPMTPublic{tpm2.ECCEKTemplate}
	}
	var first crypto.PublicKey
	for _, h := range handles {
		key, ok, err := t.readPublic(h)
		if err != nil {
			return nil, t.tpmError(err, fmt.Sprintf("read the EK at 0x%08x", uint32(h)), noHierarchy)
		}
		if !ok {
			continue
		}
		k, err := tpm2.Pub(key.Public)
		if err != nil {
			continue
		}
		if want == nil || samePublic(k, want) {
			return k, nil
		}
		if first == nil {
			first = k
		}
	}
	for _, tmpl := range templates {
		rsp, err := tpm2.CreatePrimary{PrimaryHandle: t.endorsement(), InPublic: tpm2.New2B(tmpl)}.Execute(t.t)
		if err != nil {
			return nil, t.tpmError(err, "derive the EK from the TCG template", endorsement)
		}
		t.flush(rsp.ObjectHandle)
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			return nil, err
		}
		k, err := tpm2.Pub(*pub)
		if err != nil {
			return nil, err
		}
		if want == nil || samePublic(k, want) {
			return k, nil
		}
		if first == nil {
			first = k
		}
	}
	return first, nil
}

func samePublic(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
