package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// nvChunk stays under every TPM's TPM2_PT_NV_BUFFER_MAX (1024 on most,
// swtpm included) and response buffer.
const nvChunk = 768

// nvPublic returns an index's public area and name, ok=false if undefined.
func (t *TPM) nvPublic(index tpm2.TPMHandle) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, bool, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t.t)
	if err != nil {
		if handleFree(err) {
			return nil, tpm2.TPM2BName{}, false, nil
		}
		return nil, tpm2.TPM2BName{}, false, err
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, false, err
	}
	return pub, rsp.NVName, true, nil
}

// nvRead reads a whole index with its own (empty) auth, or owner auth if
// the index does not allow AUTHREAD.
func (t *TPM) nvRead(index tpm2.TPMHandle) ([]byte, bool, error) {
	pub, name, ok, err := t.nvPublic(index)
	if err != nil || !ok {
		return nil, ok, err
	}
	if !pub.Attributes.Written {
		return nil, false, nil
	}
	auth := tpm2.AuthHandle{Handle: index, Name: name, Auth: tpm2.PasswordAuth(nil)}
	if !pub.Attributes.AuthRead && pub.Attributes.OwnerRead {
		auth = t.owner()
	}
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); off += nvChunk {
		n := min(nvChunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{AuthHandle: auth, NVIndex: tpm2.NamedHandle{Handle: index, Name: name}, Size: uint16(n), Offset: uint16(off)}.Execute(t.t)
		if err != nil {
			return nil, true, err
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, true, nil
}

// nvStore defines index (owner hierarchy) to hold exactly data and writes
// it. An existing index is replaced only with force.
func (t *TPM) nvStore(index tpm2.TPMHandle, data []byte, force bool) error {
	if len(data) == 0 || len(data) > 0xFFFF {
		return fmt.Errorf("%d bytes do not fit an NV index", len(data))
	}
	_, name, ok, err := t.nvPublic(index)
	if err != nil {
		return t.tpmError(err, fmt.Sprintf("read NV index 0x%08x", uint32(index)), noHierarchy)
	}
	if ok {
		if !force {
			return errExists
		}
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: t.owner(), NVIndex: tpm2.NamedHandle{Handle: index, Name: name}}).Execute(t.t); err != nil {
			return t.tpmError(err, fmt.Sprintf("remove NV index 0x%08x", uint32(index)), ownerH)
		}
	}
	// Owner writes; anyone reads (a certificate is public); no DA, so
	// reading it can never count towards a lockout.
	pub := tpm2.TPMSNVPublic{
		NVIndex: index,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			OwnerWrite: true,
			OwnerRead:  true,
			AuthRead:   true,
			PPRead:     true,
			NoDA:       true,
			NT:         tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(data)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: t.owner(), PublicInfo: tpm2.New2B(pub)}).Execute(t.t); err != nil {
		return t.tpmError(err, fmt.Sprintf("define NV index 0x%08x (%d bytes)", uint32(index), len(data)), ownerH)
	}
	_, name, _, err = t.nvPublic(index)
	if err != nil {
		return t.tpmError(err, fmt.Sprintf("read NV index 0x%08x", uint32(index)), noHierarchy)
	}
	for off := 0; off < len(data); off += nvChunk {
		end := min(off+nvChunk, len(data))
		_, err := tpm2.NVWrite{
			AuthHandle: t.owner(),
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}.Execute(t.t)
		if err != nil {
			return t.tpmError(err, fmt.Sprintf("write NV index 0x%08x", uint32(index)), ownerH)
		}
	}
	return nil
}

// errExists is returned (wrapped) when an identity is already there and
// the caller did not ask to overwrite it.
var errExists = errors.New("already exists")

// ErrExists matches errors about an existing identity refused without --force.
var ErrExists = errExists
