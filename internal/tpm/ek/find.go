package ek

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Well-known places (TCG TPM v2.0 Provisioning Guidance, table 2; the
// Azure IoT SDKs and aziot-tpmd use the same handle).
const (
	Handle = tpm2.TPMHandle(0x81010001) // RSA 2048 EK
	CertNV = tpm2.TPMHandle(0x01c00002) // RSA 2048 EK certificate
)

// CertState says how the EK relates to the TPM's EK certificate.
type CertState string

const (
	CertAbsent     CertState = "absent"     // NV 0x01c00002 holds no certificate
	CertMatches    CertState = "matches"    // the certificate is for this EK
	CertDiffers    CertState = "differs"    // the certificate is for another key
	CertUnreadable CertState = "unreadable" // NV holds something that is no RSA certificate
)

// Key is the endorsement key Find settled on.
type Key struct {
	// Handle is Handle for a persistent EK, else a transient object the
	// caller flushes (FlushContext) when done.
	Handle     tpm2.TPMHandle
	Name       tpm2.TPM2BName
	Public     tpm2.TPMTPublic
	Marshalled []byte // TPM2B_PUBLIC as the TPM returns it: what DPS receives
	// Persistent reports that Handle is 0x81010001.
	Persistent bool
	// Persisted reports that this Find put the key at 0x81010001.
	Persisted bool
	// PersistErr is why a created key stayed transient (Options.Persist
	// and the owner refused); nil otherwise.
	PersistErr error
	// Template made the key; for a persistent EK found at Handle only
	// when Options.Identify asked and one of Templates reproduces it.
	Template Template
	// Identified is false for a persistent EK whose template is not known.
	Identified bool
	// Cert is the EK certificate's relation to this key; CertKey is the
	// certificate's public key when it was readable.
	Cert    CertState
	CertKey *rsa.PublicKey
}

// RegistrationID is the key's DPS registration id.
func (k *Key) RegistrationID() string { return RegistrationID(k.Marshalled) }

// Options steer Find.
type Options struct {
	// Template creates the EK when Handle is empty; Auto picks the one
	// whose key the EK certificate certifies.
	Template Template
	// Persist puts a created EK at Handle (EvictControl, owner auth), so
	// later tools and restarts find the same key.
	Persist bool
	// Identify finds out which template a persistent EK came from by
	// recreating the candidates (needs the endorsement auth).
	Identify bool

	EndorsementAuth, OwnerAuth []byte
}

// Hierarchy names whose auth a failed step used, so callers can name the
// setting that fixes it.
type Hierarchy string

const (
	NoHierarchy Hierarchy = ""
	Endorsement Hierarchy = "endorsement"
	Owner       Hierarchy = "owner"
)

// StepError is a TPM command failure with what it was for.
type StepError struct {
	What      string
	Hierarchy Hierarchy
	Err       error
}

func (e *StepError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

func stepErr(err error, what string, h Hierarchy) error {
	return &StepError{What: what, Hierarchy: h, Err: err}
}

// Find returns the TPM's RSA EK: the one persisted at 0x81010001 when
// there is one (what every tool reads first), else the primary made from
// opts.Template — with Auto the template whose key the EK certificate in
// NV 0x01c00002 certifies, TCG when there is none or neither matches —
// persisted at 0x81010001 if opts.Persist and the owner allows it.
func Find(tr transport.TPM, opts Options) (*Key, error) {
	certKey, certState, err := ReadCertKey(tr)
	if err != nil {
		return nil, err
	}
	pub, name, marshalled, ok, err := readPublic(tr, Handle)
	if err != nil {
		return nil, stepErr(err, "read the endorsement key at 0x81010001", NoHierarchy)
	}
	if ok {
		k := &Key{Handle: Handle, Name: name, Public: *pub, Marshalled: marshalled, Persistent: true, CertKey: certKey}
		k.Cert = relate(certState, certKey, pub)
		if opts.Identify {
			for _, t := range Templates {
				c, err := create(tr, t, opts.EndorsementAuth)
				if err != nil {
					return nil, err
				}
				flush(tr, c.Handle)
				if bytes.Equal(c.Marshalled, k.Marshalled) {
					k.Template, k.Identified = t, true
					break
				}
			}
		}
		return k, nil
	}

	var chosen *Key
	for _, t := range Templates {
		if opts.Template != Auto {
			t = opts.Template
		}
		c, err := create(tr, t, opts.EndorsementAuth)
		if err != nil {
			if chosen != nil {
				flush(tr, chosen.Handle)
			}
			return nil, err
		}
		c.CertKey = certKey
		c.Cert = relate(certState, certKey, &c.Public)
		switch {
		case chosen == nil:
			chosen = c // the configured template, or TCG: the default
		case c.Cert == CertMatches:
			flush(tr, chosen.Handle)
			chosen = c
		default:
			flush(tr, c.Handle)
		}
		if opts.Template != Auto || chosen.Cert != CertDiffers {
			break
		}
	}
	if opts.Persist {
		persist(tr, chosen, opts.OwnerAuth)
	}
	return chosen, nil
}

// persist moves k to Handle; on refusal k stays transient with PersistErr.
// If another tool persisted an EK there since Find looked, k becomes that
// one: what is at 0x81010001 is what every tool uses from now on.
func persist(tr transport.TPM, k *Key, ownerAuth []byte) {
	_, err := tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)},
		ObjectHandle:     tpm2.NamedHandle{Handle: k.Handle, Name: k.Name},
		PersistentHandle: Handle,
	}.Execute(tr)
	if errors.Is(err, tpm2.TPMRCNVDefined) {
		if pub, name, marshalled, ok, rerr := readPublic(tr, Handle); rerr == nil && ok {
			flush(tr, k.Handle)
			same := bytes.Equal(marshalled, k.Marshalled)
			*k = Key{Handle: Handle, Name: name, Public: *pub, Marshalled: marshalled, Persistent: true,
				Template: k.Template, Identified: same, Cert: relate(certStateOf(k), k.CertKey, pub), CertKey: k.CertKey}
			if !same {
				k.Template = Auto
			}
			return
		}
	}
	if err != nil {
		k.PersistErr = stepErr(err, "persist the endorsement key at 0x81010001", Owner)
		return
	}
	flush(tr, k.Handle)
	k.Handle, k.Persistent, k.Persisted = Handle, true, true
}

// create makes the primary from template t in the endorsement hierarchy.
func create(tr transport.TPM, t Template, auth []byte) (*Key, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(auth)},
		InPublic:      tpm2.New2B(t.Public()),
	}.Execute(tr)
	if err != nil {
		return nil, stepErr(err, fmt.Sprintf("create the endorsement key from the %s template", t), Endorsement)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(tr, rsp.ObjectHandle)
		return nil, stepErr(err, "read the created endorsement key's public area", NoHierarchy)
	}
	return &Key{Handle: rsp.ObjectHandle, Name: rsp.Name, Public: *pub, Marshalled: tpm2.Marshal(rsp.OutPublic), Template: t, Identified: true}, nil
}

func flush(tr transport.TPM, h tpm2.TPMHandle) {
	if h>>24 == 0x80 {
		_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tr)
	}
}

// certStateOf is the certificate's state before relating it to a key.
func certStateOf(k *Key) CertState {
	if k.CertKey != nil {
		return CertMatches
	}
	return k.Cert
}

// relate compares an EK with the certificate's key.
func relate(state CertState, certKey *rsa.PublicKey, pub *tpm2.TPMTPublic) CertState {
	if state != CertMatches {
		return state
	}
	if SameKey(pub, certKey) {
		return CertMatches
	}
	return CertDiffers
}

// SameKey reports whether pub is the RSA key k.
func SameKey(pub *tpm2.TPMTPublic, k *rsa.PublicKey) bool {
	if pub == nil || k == nil || pub.Type != tpm2.TPMAlgRSA {
		return false
	}
	u, err := pub.Unique.RSA()
	if err != nil {
		return false
	}
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return false
	}
	e := int(parms.Exponent)
	if e == 0 {
		e = 65537
	}
	return e == k.E && new(big.Int).SetBytes(u.Buffer).Cmp(k.N) == 0
}

// ReadCertKey reads the RSA EK certificate's public key from NV
// 0x01c00002. state is CertMatches when there is one (to be related to a
// key), CertAbsent or CertUnreadable otherwise; a TPM failure is an error.
func ReadCertKey(tr transport.TPM) (*rsa.PublicKey, CertState, error) {
	der, ok, err := nvRead(tr, CertNV)
	if err != nil {
		return nil, "", stepErr(err, "read the EK certificate from NV 0x01c00002", NoHierarchy)
	}
	if !ok {
		return nil, CertAbsent, nil
	}
	k, err := CertPublicKey(der)
	if err != nil {
		return nil, CertUnreadable, nil
	}
	return k, CertMatches, nil
}

// CertPublicKey is the RSA key of a DER EK certificate as NV holds it
// (possibly padded after the DER). Only the key is read: whether the
// certificate chains to the maker is `edgectl tpm ek verify`'s business.
func CertPublicKey(der []byte) (*rsa.PublicKey, error) {
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &raw); err == nil && len(rest) < len(der) {
		der = der[:len(der)-len(rest)]
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	k, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the EK certificate's key is not RSA")
	}
	return k, nil
}

// readPublic reads an object's public area and its TPM2B_PUBLIC as the
// TPM returns it; ok=false if the handle is empty.
func readPublic(tr transport.TPM, h tpm2.TPMHandle) (*tpm2.TPMTPublic, tpm2.TPM2BName, []byte, bool, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tr)
	if err != nil {
		if handleFree(err) {
			return nil, tpm2.TPM2BName{}, nil, false, nil
		}
		return nil, tpm2.TPM2BName{}, nil, false, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, nil, false, err
	}
	return pub, rsp.Name, tpm2.Marshal(rsp.OutPublic), true, nil
}

func handleFree(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCReferenceH0)
}

// nvChunk stays under every TPM's TPM2_PT_NV_BUFFER_MAX.
const nvChunk = 768

// nvRead reads a whole written NV index with its own empty auth (EK
// certificate indices are AUTHREAD with no auth value); ok=false if it
// is undefined or unwritten.
func nvRead(tr transport.TPM, index tpm2.TPMHandle) ([]byte, bool, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tr)
	if err != nil {
		if handleFree(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, false, err
	}
	if !pub.Attributes.Written {
		return nil, false, nil
	}
	auth := tpm2.AuthHandle{Handle: index, Name: rsp.NVName, Auth: tpm2.PasswordAuth(nil)}
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); off += nvChunk {
		n := min(nvChunk, int(pub.DataSize)-off)
		r, err := tpm2.NVRead{AuthHandle: auth, NVIndex: tpm2.NamedHandle{Handle: index, Name: rsp.NVName}, Size: uint16(n), Offset: uint16(off)}.Execute(tr)
		if err != nil {
			return nil, true, err
		}
		out = append(out, r.Data.Buffer...)
	}
	return out, true, nil
}
