package tpm

import (
	"context"
	"errors"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/tpm/ek"
)

// Key is a loaded or persistent TPM key and its public area.
type Key struct {
	Handle tpm2.TPMHandle
	Name   tpm2.TPM2BName
	Public tpm2.TPMTPublic
	// Marshalled is the TPM2B_PUBLIC as the TPM returns it: what DPS
	// receives (base64) as endorsementKey and storageRootKey.
	Marshalled []byte
	// EK says, for the endorsement key, which template and handle it
	// came from and how it relates to the EK certificate.
	EK *ek.Key
}

// Persistent reports whether the key survives a TPM reset.
func (k *Key) Persistent() bool { return k.Handle>>24 == 0x81 }

// RegistrationID is the DPS registration id the Azure IoT SDKs derive
// from an EK: SHA-256 of its TPM2B_PUBLIC, base32 (RFC 4648) in lower
// case without '=' padding.
func RegistrationID(ekTPM2BPublic []byte) string { return ek.RegistrationID(ekTPM2BPublic) }

// readPublic reads a persistent object; ok is false when the handle is empty.
func (t *TPM) readPublic(h tpm2.TPMHandle) (*Key, bool, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t.t)
	if err != nil {
		if handleFree(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, false, err
	}
	return &Key{Handle: h, Name: rsp.Name, Public: *pub, Marshalled: tpm2.Marshal(rsp.OutPublic)}, true, nil
}

// ReadEKPublic returns the RSA endorsement key: the persistent one at
// 0x81010001 when the TPM has it (as makers and the Azure IoT SDKs leave
// it), else the primary made from the configured EK template (Auto: the
// one the EK certificate in NV certifies), which it persists at
// 0x81010001 when the owner allows so that restarts and other tools see
// the same key and registration id. Key.EK says where it came from; a
// transient EK is flushed by Close.
func (t *TPM) ReadEKPublic(ctx context.Context) (*Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k, err := ek.Find(t.t, ek.Options{Template: t.cfg.EKTemplate, Persist: true, EndorsementAuth: t.cfg.EndorsementAuth, OwnerAuth: t.cfg.OwnerAuth})
	if err != nil {
		var se *ek.StepError
		if errors.As(err, &se) {
			return nil, t.tpmError(se.Err, se.What, hierarchy(se.Hierarchy))
		}
		return nil, fault.Wrap(fault.Failed, err, "%s: find the endorsement key", t.cfg.Where())
	}
	if !k.Persistent {
		t.flushLater(k.Handle)
	}
	return &Key{Handle: k.Handle, Name: k.Name, Public: k.Public, Marshalled: k.Marshalled, EK: k}, nil
}

// AttestationKeys returns the EK and the SRK (EnsureSRK), the two keys of
// DPS TPM attestation: the enrolment names the EK, and DPS wraps the
// device's authentication key to both.
func (t *TPM) AttestationKeys(ctx context.Context) (ek, srk *Key, err error) {
	if ek, err = t.ReadEKPublic(ctx); err != nil {
		return nil, nil, err
	}
	if srk, err = t.EnsureSRK(ctx); err != nil {
		return nil, nil, err
	}
	return ek, srk, nil
}

// EnsureSRK returns the storage root key at 0x81000001, creating it from
// the TCG default SRK template and persisting it when absent.
func (t *TPM) EnsureSRK(ctx context.Context) (*Key, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	return t.ensureSRK()
}

func (t *TPM) ensureSRK() (*Key, error) {
	k, ok, err := t.readPublic(SRKHandle)
	if err != nil {
		return nil, t.tpmError(err, "read the storage root key at 0x81000001", noHierarchy)
	}
	if ok {
		return k, nil
	}
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: t.owner(), InPublic: tpm2.New2B(tpm2.RSASRKTemplate)}.Execute(t.t)
	if err != nil {
		return nil, t.tpmError(err, "create the storage root key", ownerH)
	}
	defer t.flush(rsp.ObjectHandle)
	if err := t.evictControl(rsp.ObjectHandle, rsp.Name, SRKHandle); err != nil {
		return nil, t.tpmError(err, "persist the storage root key at 0x81000001", ownerH)
	}
	k, ok, err = t.readPublic(SRKHandle)
	if err != nil || !ok {
		return nil, t.tpmError(errors.Join(err, errors.New("not found after EvictControl")), "read the new storage root key", noHierarchy)
	}
	return k, nil
}
