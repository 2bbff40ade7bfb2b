package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// AuthKey is DPS's authenticationKey (the 401 answer to a TPM
// registration, and registrationState.tpm.authenticationKey), decoded.
// The layout is what the Azure IoT SDKs parse (azure-iot-sdk-c
// hsm_client_tpm, azure-iot-sdk-node TpmSecurityClient._activateIdentityKey):
//
//	TPM2B_ID_OBJECT        credential blob: the inner wrap key, for the EK, bound to the SRK's name
//	TPM2B_ENCRYPTED_SECRET its seed, RSA-OAEP to the EK, label "IDENTITY"
//	TPM2B_PRIVATE          the HMAC key's duplicate: inner (AES-CFB) and outer wrapping
//	TPM2B_ENCRYPTED_SECRET the outer seed, RSA-OAEP to the SRK, label "DUPLICATE"
//	TPM2B_PUBLIC           the HMAC key's public area
//	TPM2B_DATA             encrypted URI data (optional; empty from DPS)
//
// Bytes after the TPM2B_DATA are ignored, as the SDKs ignore them.
type AuthKey struct {
	CredentialBlob []byte // TPMS_ID_OBJECT (contents of the TPM2B)
	Secret         []byte // encrypted seed of the credential
	Duplicate      []byte // TPM2B_PRIVATE contents
	SymSeed        []byte // encrypted seed of the outer wrapper
	Public         tpm2.TPMTPublic
	PublicBytes    []byte // TPMT_PUBLIC as sent
	EncryptedURI   []byte
}

// maxAuthKey bounds a blob: a few RSA-2048 secrets and small structures.
const maxAuthKey = 8 << 10

// ParseAuthKey decodes an authenticationKey blob (after base64).
func ParseAuthKey(b []byte) (*AuthKey, error) {
	if len(b) > maxAuthKey {
		return nil, fmt.Errorf("authentication key is %d bytes; at most %d expected", len(b), maxAuthKey)
	}
	rest := b
	next := func(what string) ([]byte, error) {
		if len(rest) < 2 {
			return nil, fmt.Errorf("authentication key ends before its %s", what)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest)-2 < n {
			return nil, fmt.Errorf("authentication key's %s claims %d bytes; %d remain", what, n, len(rest)-2)
		}
		v := rest[2 : 2+n]
		rest = rest[2+n:]
		return v, nil
	}
	var k AuthKey
	var err error
	fields := []struct {
		name string
		dst  *[]byte
	}{
		{"credential blob (TPM2B_ID_OBJECT)", &k.CredentialBlob},
		{"credential secret (TPM2B_ENCRYPTED_SECRET)", &k.Secret},
		{"key duplicate (TPM2B_PRIVATE)", &k.Duplicate},
		{"wrap seed (TPM2B_ENCRYPTED_SECRET)", &k.SymSeed},
		{"key public area (TPM2B_PUBLIC)", &k.PublicBytes},
	}
	for _, f := range fields {
		if *f.dst, err = next(f.name); err != nil {
			return nil, err
		}
		if len(*f.dst) == 0 {
			return nil, fmt.Errorf("authentication key's %s is empty", f.name)
		}
	}
	if len(rest) > 0 {
		if k.EncryptedURI, err = next("encrypted URI data (TPM2B_DATA)"); err != nil {
			return nil, err
		}
	}
	pub, err := unmarshalPublic(k.PublicBytes)
	if err != nil {
		return nil, fmt.Errorf("authentication key's public area: %w", err)
	}
	k.Public = *pub
	if err := checkHMACKey(&k.Public); err != nil {
		return nil, fmt.Errorf("authentication key's public area: %w", err)
	}
	return &k, nil
}

// unmarshalPublic parses a TPMT_PUBLIC, refusing trailing bytes.
func unmarshalPublic(b []byte) (pub *tpm2.TPMTPublic, err error) {
	defer func() {
		if r := recover(); r != nil { // the reflection unmarshaller is not hardened
			pub, err = nil, fmt.Errorf("malformed TPMT_PUBLIC")
		}
	}()
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("malformed TPMT_PUBLIC: %w", err)
	}
	if !sameBytes(tpm2.Marshal(pub), b) {
		return nil, errors.New("TPMT_PUBLIC has trailing or non-canonical bytes")
	}
	return pub, nil
}

func sameBytes(a, b []byte) bool { return string(a) == string(b) }

// checkHMACKey requires a keyed-hash signing key with an HMAC scheme,
// which is all DPS issues and all Sign uses.
func checkHMACKey(p *tpm2.TPMTPublic) error {
	if p.Type != tpm2.TPMAlgKeyedHash {
		return fmt.Errorf("type 0x%04x is not a keyed hash", uint16(p.Type))
	}
	if !p.ObjectAttributes.SignEncrypt || p.ObjectAttributes.Decrypt || p.ObjectAttributes.Restricted {
		return errors.New("it is not an unrestricted signing key")
	}
	kh, err := p.Parameters.KeyedHashDetail()
	if err != nil {
		return err
	}
	if kh.Scheme.Scheme != tpm2.TPMAlgHMAC {
		return fmt.Errorf("scheme 0x%04x is not HMAC", uint16(kh.Scheme.Scheme))
	}
	return nil
}

// Marshal encodes k in the layout ParseAuthKey reads.
func (k *AuthKey) Marshal() []byte {
	pub := k.PublicBytes
	if len(pub) == 0 {
		pub = tpm2.Marshal(&k.Public)
	}
	var out []byte
	for _, v := range [][]byte{k.CredentialBlob, k.Secret, k.Duplicate, k.SymSeed, pub, k.EncryptedURI} {
		out = binary.BigEndian.AppendUint16(out, uint16(len(v)))
		out = append(out, v...)
	}
	return out
}
