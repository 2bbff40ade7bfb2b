package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/fault"
)

// ImportAuthKey activates DPS's authenticationKey blob and persists the
// HMAC key it carries at the configured auth key handle, replacing any
// key there. Only the TPM whose EK the blob was made for can do it: the
// inner wrap key comes out of ActivateCredential under an EK policy
// session (PolicySecret on the endorsement hierarchy), and the duplicate
// is wrapped to the SRK.
func (t *TPM) ImportAuthKey(ctx context.Context, blob []byte) error {
	k, err := ParseAuthKey(blob)
	if err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "DPS sent an unusable TPM authentication key: %v", err)
	}
	ek, srk, err := t.AttestationKeys(ctx)
	if err != nil {
		return err
	}
	// The rest is one exchange with the TPM: nothing else may interleave
	// its commands on the connection (an HMAC with the old key, a read).
	if err := t.lock(ctx); err != nil {
		return err
	}
	defer t.mu.Unlock()
	inner, err := t.activate(ek, srk, k)
	if err != nil {
		return err
	}
	defer clear(inner)
	srkAuth := tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	imp, err := tpm2.Import{
		ParentHandle:  srkAuth,
		EncryptionKey: tpm2.TPM2BData{Buffer: inner},
		ObjectPublic:  tpm2.BytesAs2B[tpm2.TPMTPublic](k.PublicBytes),
		Duplicate:     tpm2.TPM2BPrivate{Buffer: k.Duplicate},
		InSymSeed:     tpm2.TPM2BEncryptedSecret{Buffer: k.SymSeed},
		Symmetric: tpm2.TPMTSymDef{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(len(inner)*8)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
	}.Execute(t.t)
	if err != nil {
		return t.keyRefused(err, "import the DPS authentication key under the SRK")
	}
	loaded, err := tpm2.Load{ParentHandle: srkAuth, InPrivate: imp.OutPrivate, InPublic: tpm2.BytesAs2B[tpm2.TPMTPublic](k.PublicBytes)}.Execute(t.t)
	if err != nil {
		return t.tpmError(err, "load the imported DPS authentication key", "")
	}
	defer tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}.Execute(t.t)
	h := t.cfg.AuthKeyHandle
	if old, ok, err := t.readPublic(h); err != nil {
		return t.tpmError(err, fmt.Sprintf("read the persistent handle 0x%08x", uint32(h)), "")
	} else if ok {
		if err := t.evictControl(h, old.Name, h); err != nil {
			return t.tpmError(err, fmt.Sprintf("remove the previous authentication key at 0x%08x", uint32(h)), "owner")
		}
	}
	if err := t.evictControl(loaded.ObjectHandle, loaded.Name, h); err != nil {
		return t.tpmError(err, fmt.Sprintf("persist the DPS authentication key at 0x%08x", uint32(h)), "owner")
	}
	return nil
}

// activate recovers the inner wrap key with ActivateCredential: the SRK
// is the credentialed object, the EK decrypts, authorized by a policy
// session satisfying the EK's PolicySecret(TPM_RH_ENDORSEMENT).
func (t *TPM) activate(ek, srk *Key, k *AuthKey) ([]byte, error) {
	sess, closeSess, err := tpm2.PolicySession(t.t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, t.tpmError(err, "start a policy session for the EK", "")
	}
	defer closeSess()
	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(t.cfg.EndorsementAuth)},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}.Execute(t.t)
	if err != nil {
		return nil, t.tpmError(err, "authorize the EK (PolicySecret on the endorsement hierarchy)", "endorsement")
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: sess},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: k.CredentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: k.Secret},
	}.Execute(t.t)
	if err != nil {
		return nil, t.keyRefused(err, "activate the DPS authentication key (ActivateCredential)")
	}
	inner := rsp.CertInfo.Buffer
	switch len(inner) {
	case 16, 24, 32:
		return inner, nil
	}
	clear(inner)
	return nil, fault.New(fault.InvalidArgs, "%s: DPS's inner wrap key is %d bytes; an AES key is 16, 24 or 32", t.cfg.Where(), len(inner))
}

// keyRefused reports the TPM rejecting DPS's blob as cryptographically
// not for it: the enrollment holds another TPM's endorsement key.
func (t *TPM) keyRefused(err error, what string) error {
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		for _, bad := range []tpm2.TPMRC{tpm2.TPMRCIntegrity, tpm2.TPMRCValue, tpm2.TPMRCSize, tpm2.TPMRCKey, tpm2.TPMRCBinding, tpm2.TPMRCScheme} {
			if errors.Is(rc, bad) {
				return t.notForThisTPM(err, what, rc)
			}
		}
		// libtpms (swtpm) answers an undecryptable seed with
		// TPM_RC_FAILURE but keeps working; a TPM truly in failure mode
		// answers nothing else either.
		if errors.Is(rc, tpm2.TPMRCFailure) {
			if _, _, perr := t.readPublic(SRKHandle); perr == nil {
				return t.notForThisTPM(err, what, rc)
			}
		}
	}
	return t.tpmError(err, what, "")
}

func (t *TPM) notForThisTPM(err error, what string, rc tpm2.TPMRC) error {
	return fault.Wrap(fault.NotAuthorized, err, "%s: cannot %s: the key was not made for this TPM (%s); the DPS enrollment holds another TPM's endorsement key: enroll this TPM's EK or check the registration id", t.cfg.Where(), what, rcName(rc))
}

// HasAuthKey reports whether a DPS authentication key is persisted.
func (t *TPM) HasAuthKey(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k, ok, err := t.readPublic(t.cfg.AuthKeyHandle)
	if err != nil {
		return false, t.tpmError(err, fmt.Sprintf("read the persistent handle 0x%08x", uint32(t.cfg.AuthKeyHandle)), "")
	}
	return ok && checkHMACKey(&k.Public) == nil, nil
}

// maxHMACBuffer is TPM2B_MAX_BUFFER's usual size; longer data goes
// through an HMAC sequence.
const maxHMACBuffer = 1024

// Sign computes HMAC(auth key, data) in the TPM (TPM2_HMAC): the SAS
// signature for DPS and IoT Hub.
func (t *TPM) Sign(ctx context.Context, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := t.cfg.AuthKeyHandle
	k, ok, err := t.readPublic(h)
	if err != nil {
		return nil, t.tpmError(err, fmt.Sprintf("read the DPS authentication key at 0x%08x", uint32(h)), "")
	}
	if !ok {
		return nil, fault.New(fault.NotFound, "%s has no DPS authentication key at 0x%08x; it is imported when DPS registration runs (Reprovision)", t.cfg.Where(), uint32(h))
	}
	if err := checkHMACKey(&k.Public); err != nil {
		return nil, fault.New(fault.InvalidArgs, "%s: the object at 0x%08x is not an HMAC key (%v); set [tpm] auth_key_handle to a free persistent handle", t.cfg.Where(), uint32(h), err)
	}
	kh, _ := k.Public.Parameters.KeyedHashDetail()
	hmacDetail, err := kh.Scheme.Details.HMAC()
	if err != nil {
		return nil, fault.Wrap(fault.Failed, err, "%s: HMAC scheme of the key at 0x%08x", t.cfg.Where(), uint32(h))
	}
	key := tpm2.AuthHandle{Handle: h, Name: k.Name, Auth: tpm2.PasswordAuth(nil)}
	if len(data) <= maxHMACBuffer {
		rsp, err := tpm2.Hmac{Handle: key, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data}, HashAlg: hmacDetail.HashAlg}.Execute(t.t)
		if err != nil {
			return nil, t.tpmError(err, "sign with the DPS authentication key (TPM2_HMAC)", "")
		}
		return rsp.OutHMAC.Buffer, nil
	}
	seq, err := tpm2.HmacStart{Handle: key, HashAlg: hmacDetail.HashAlg}.Execute(t.t)
	if err != nil {
		return nil, t.tpmError(err, "start an HMAC sequence", "")
	}
	sh := tpm2.AuthHandle{Handle: seq.SequenceHandle, Auth: tpm2.PasswordAuth(nil)}
	for len(data) > maxHMACBuffer {
		if _, err := (tpm2.SequenceUpdate{SequenceHandle: sh, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data[:maxHMACBuffer]}}).Execute(t.t); err != nil {
			_, _ = tpm2.FlushContext{FlushHandle: seq.SequenceHandle}.Execute(t.t)
			return nil, t.tpmError(err, "update the HMAC sequence", "")
		}
		data = data[maxHMACBuffer:]
	}
	rsp, err := tpm2.SequenceComplete{SequenceHandle: sh, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data}, Hierarchy: tpm2.TPMRHNull}.Execute(t.t)
	if err != nil {
		return nil, t.tpmError(err, "complete the HMAC sequence", "")
	}
	return rsp.Result.Buffer, nil
}
