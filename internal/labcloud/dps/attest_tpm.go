package dps

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edgev2/edgev2/internal/labcloud/hub"
)

// tpmKeyBytes is the size of the HMAC keys DPS issues to TPMs.
const tpmKeyBytes = 32

// tpmSession is what the lab DPS remembers of a TPM between its challenge
// and the authenticated requests: the keys it issued (newest first; the
// previous one stays valid for polls in flight) and the SRK to wrap to.
type tpmSession struct {
	keys [][]byte
	srk  *tpm2.TPMTPublic
}

// parseEndorsementKey reads an EK: base64 or binary TPM2B_PUBLIC, or a
// PEM RSA public key put into the TCG default EK template.
func parseEndorsementKey(data []byte) (*tpm2.TPMTPublic, error) {
	text := bytes.TrimSpace(data)
	if b, _ := pem.Decode(text); b != nil {
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM public key: %w", err)
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok || rk.E != 65537 || rk.N.BitLen() != 2048 {
			return nil, errors.New("PEM key is not an RSA-2048 key with exponent 65537 (the TCG default EK)")
		}
		pub := tpm2.RSAEKTemplate
		pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: rk.N.FillBytes(make([]byte, 256))})
		return &pub, nil
	}
	raw := data
	if b, err := base64.StdEncoding.DecodeString(string(text)); err == nil {
		raw = b
	}
	return parsePublic2B(raw, "endorsement key")
}

// parsePublic2B reads a TPM2B_PUBLIC holding an RSA restricted decryption
// key (an EK or SRK), refusing trailing bytes.
func parsePublic2B(b []byte, what string) (pub *tpm2.TPMTPublic, err error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return nil, fmt.Errorf("%s is not a TPM2B_PUBLIC (size prefix and length disagree)", what)
	}
	defer func() {
		if r := recover(); r != nil {
			pub, err = nil, fmt.Errorf("%s: malformed TPMT_PUBLIC", what)
		}
	}()
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](b[2:])
	if err != nil {
		return nil, fmt.Errorf("%s: malformed TPMT_PUBLIC: %v", what, err)
	}
	if !bytes.Equal(tpm2.Marshal(pub), b[2:]) {
		return nil, fmt.Errorf("%s: TPMT_PUBLIC has trailing bytes", what)
	}
	if pub.Type != tpm2.TPMAlgRSA {
		return nil, fmt.Errorf("%s is not an RSA key; this DPS, like Azure's, takes RSA-2048 EKs", what)
	}
	if !pub.ObjectAttributes.Restricted || !pub.ObjectAttributes.Decrypt || pub.ObjectAttributes.SignEncrypt {
		return nil, fmt.Errorf("%s is not a restricted decryption key", what)
	}
	if _, err := tpm2.ImportEncapsulationKey(pub); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return pub, nil
}

func loadEndorsementKey(e Enrollment, key string) (*tpm2.TPMTPublic, error) {
	data := []byte(e.EndorsementKey)
	if e.EndorsementKeyFile != "" {
		var err error
		if data, err = os.ReadFile(e.EndorsementKeyFile); err != nil {
			return nil, &ConfigError{Table: "dps", Key: key + ".endorsement_key_file", Problem: err.Error(), Fix: "name a file with the EK's TPM2B_PUBLIC or PEM public key"}
		}
	}
	ek, err := parseEndorsementKey(data)
	if err != nil {
		return nil, &ConfigError{Table: "dps", Key: key + ".endorsement_key", Problem: err.Error(), Fix: "use base64 of the EK's TPM2B_PUBLIC"}
	}
	return ek, nil
}

// tpmChallenge answers an unauthenticated TPM register: 401 with an
// authenticationKey sealed to the enrolled EK (not the one in the body:
// anyone may claim an EK, only its TPM can activate the key).
func (s *Server) tpmChallenge(regID string, in *TpmAttestation) *dpsError {
	e := s.individual(regID)
	if e == nil {
		return errorf(http.StatusNotFound, CodeEnrollmentNotFound, "Enrollment not found for registration %q", regID)
	}
	if e.Attestation != AttestationTPM {
		return unauthorized("Unauthorized: the enrollment of %q uses %s attestation", regID, e.Attestation)
	}
	if e.Disabled {
		return unauthorized("Unauthorized: the enrollment of %q is disabled", regID)
	}
	ekBytes, err1 := base64.StdEncoding.DecodeString(in.EndorsementKey)
	srkBytes, err2 := base64.StdEncoding.DecodeString(in.StorageRootKey)
	if err1 != nil || err2 != nil {
		return errorf(http.StatusBadRequest, CodeBadRequest, "tpm.endorsementKey and tpm.storageRootKey must be base64")
	}
	ek, err := parsePublic2B(ekBytes, "tpm.endorsementKey")
	if err != nil {
		return errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	srk, err := parsePublic2B(srkBytes, "tpm.storageRootKey")
	if err != nil {
		return errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	if !samePublicKey(ek, e.ek) {
		return unauthorized("Unauthorized: the endorsement key is not the one enrolled for %q", regID)
	}
	key := make([]byte, tpmKeyBytes)
	rand.Read(key)
	blob, err := SealAuthKey(rand.Reader, e.ek, srk, key)
	if err != nil {
		return errorf(http.StatusBadRequest, CodeBadRequest, "cannot wrap a key to this TPM: %v", err)
	}
	s.mu.Lock()
	prev := s.tpm[strings.ToLower(regID)]
	sess := &tpmSession{keys: [][]byte{key}, srk: srk}
	if prev != nil {
		sess.keys = append(sess.keys, prev.keys[0])
	}
	s.tpm[strings.ToLower(regID)] = sess
	s.mu.Unlock()
	s.log.Info("DPS TPM challenge: authentication key issued", "registration_id", regID)
	ch := unauthorized(TpmChallengeMessage)
	ch.body = TpmChallenge{Message: TpmChallengeMessage, AuthenticationKey: base64.StdEncoding.EncodeToString(blob), KeyName: TpmChallengeKeyName}
	return ch
}

// attestTPM verifies a SAS token signed with a key this DPS issued to the
// enrolled TPM.
func (s *Server) attestTPM(e *enrollment, tok *hub.SAS, regID string, now time.Time) (*attested, *dpsError) {
	if e.Disabled {
		return nil, unauthorized("Unauthorized: the enrollment of %q is disabled", regID)
	}
	s.mu.Lock()
	sess := s.tpm[strings.ToLower(regID)]
	var keys [][]byte
	if sess != nil {
		keys = append(keys, sess.keys...)
	}
	s.mu.Unlock()
	if len(keys) == 0 {
		return nil, unauthorized("Unauthorized: no authentication key was issued to %q; register without Authorization first (TPM challenge)", regID)
	}
	if err := tok.Verify(now, keys...); err != nil {
		return nil, unauthorized("Unauthorized: %v", err)
	}
	deviceID := e.DeviceID
	if deviceID == "" {
		deviceID = regID
	}
	return &attested{enr: e, deviceID: deviceID, tpm: true}, nil
}

// assignTPM issues the key the hub will know the device by and seals it
// for registrationState.tpm; s.mu held.
func (s *Server) assignTPM(regID string, att *attested) (*TpmRegistrationResult, error) {
	sess := s.tpm[strings.ToLower(regID)]
	if sess == nil {
		return nil, errors.New("no TPM session")
	}
	key := make([]byte, tpmKeyBytes)
	rand.Read(key)
	blob, err := SealAuthKey(rand.Reader, att.enr.ek, sess.srk, key)
	if err != nil {
		return nil, err
	}
	sess.keys = [][]byte{key, sess.keys[0]}
	b64 := base64.StdEncoding.EncodeToString(key)
	att.auth = sasAuth(b64, b64)
	return &TpmRegistrationResult{AuthenticationKey: base64.StdEncoding.EncodeToString(blob)}, nil
}
