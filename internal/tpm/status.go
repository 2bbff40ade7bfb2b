package tpm

import (
	"context"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Status is what `edgectl tpm status` shows.
type Status struct {
	Manufacturer    string // four ASCII characters, e.g. "IBM "
	InLockout       bool
	LockoutCounter  uint32
	MaxAuthFail     uint32
	LockoutRecovery uint32 // seconds
	EK, SRK         bool   // persistent at 0x81010001 / 0x81000001
	IDevID, LDevID  bool   // persistent at 0x81020000 / 0x81000002
	IDevIDCert      bool   // NV 0x01C90000 written
}

// Status reads the TPM's properties and which onboarding objects exist.
func (t *TPM) Status(ctx context.Context) (*Status, error) {
	if err := t.lock(ctx); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	st := &Status{}
	props := map[tpm2.TPMPT]uint32{}
	for _, first := range []tpm2.TPMPT{tpm2.TPMPTManufacturer, tpm2.TPMPTPermanent} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(first), PropertyCount: 32}.Execute(t.t)
		if err != nil {
			return nil, t.tpmError(err, "read the TPM's properties", noHierarchy)
		}
		list, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return nil, err
		}
		for _, p := range list.TPMProperty {
			props[p.Property] = p.Value
		}
	}
	m := props[tpm2.TPMPTManufacturer]
	st.Manufacturer = strings.TrimRight(string([]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}), "\x00 ")
	st.InLockout = props[tpm2.TPMPTPermanent]&(1<<9) != 0 // TPMA_PERMANENT.inLockout
	st.LockoutCounter = props[tpm2.TPMPTLockoutCounter]
	st.MaxAuthFail = props[tpm2.TPMPTMaxAuthFail]
	st.LockoutRecovery = props[tpm2.TPMPTLockoutRecovery]
	for h, dst := range map[tpm2.TPMHandle]*bool{RSAEKHandle: &st.EK, SRKHandle: &st.SRK, IDevIDHandle: &st.IDevID, LDevIDHandle: &st.LDevID} {
		_, ok, err := t.readPublic(h)
		if err != nil {
			return nil, t.tpmError(err, "read persistent objects", noHierarchy)
		}
		*dst = ok
	}
	pub, _, ok, err := t.nvPublic(IDevIDCertNV)
	if err != nil {
		return nil, t.tpmError(err, "read NV 0x01c90000", noHierarchy)
	}
	st.IDevIDCert = ok && pub.Attributes.Written
	return st, nil
}
