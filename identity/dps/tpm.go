package dps

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/edgev2/edgev2/fault"
)

// TPM is DPS TPM attestation: the register body carries the TPM's public
// keys; DPS answers the first (unauthenticated) register with 401 and an
// authenticationKey only that TPM can import; every later request carries
// a SAS token signed in the TPM (Config.SAS) with the imported key.
type TPM struct {
	// EndorsementKey and StorageRootKey are TPM2B_PUBLIC as the TPM
	// marshals them; they are sent base64-encoded.
	EndorsementKey, StorageRootKey []byte
	// Import activates an authenticationKey blob (base64-decoded) into the
	// TPM, replacing the key Config.SAS signs with. It is called with the
	// 401's key and again with registrationState.tpm.authenticationKey.
	Import func(ctx context.Context, blob []byte) error
}

// tpmAttestation is the register body's "tpm" member.
type tpmAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey,omitempty"`
}

// TPMRegistrationResult is "registrationState.tpm" and the body of the
// challenge (401) answer: {"authenticationKey": "<base64>"}.
type TPMRegistrationResult struct {
	AuthenticationKey string `json:"authenticationKey"`
}

// maxAuthKeyB64 bounds a base64 authenticationKey (an 8 KiB blob).
const maxAuthKeyB64 = 12 << 10

// ParseAuthenticationKey decodes a challenge body or a tpm result:
// exactly one JSON object with a non-empty base64 authenticationKey.
func ParseAuthenticationKey(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(body)))
	var r TPMRegistrationResult
	if err := dec.Decode(&r); err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "not a JSON object with an authenticationKey: %s", sanitize([]byte(err.Error()), 120))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fault.New(fault.InvalidArgs, "data after the JSON object")
	}
	return decodeAuthKey(r.AuthenticationKey)
}

func decodeAuthKey(s string) ([]byte, error) {
	if s == "" {
		return nil, fault.New(fault.InvalidArgs, "authenticationKey is missing or empty")
	}
	if len(s) > maxAuthKeyB64 {
		return nil, fault.New(fault.InvalidArgs, "authenticationKey is %d characters; at most %d expected", len(s), maxAuthKeyB64)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "authenticationKey is not base64")
	}
	return b, nil
}

// tpmChallenge sends the unauthenticated register that makes DPS issue
// an authenticationKey, and imports it.
func (c *client) tpmChallenge(ctx context.Context, path string, body []byte) error {
	const what = "register (TPM challenge)"
	resp, err := c.roundTripAuth(ctx, what, http.MethodPut, path, body, false)
	for err == nil && resp.Status == http.StatusTooManyRequests {
		if err := c.wait(ctx, retryAfter(resp.Header, c.cfg.Now()), what+" throttled (HTTP 429)"+c.serverReason(resp)); err != nil {
			return err
		}
		resp, err = c.roundTripAuth(ctx, what, http.MethodPut, path, body, false)
	}
	if err != nil {
		return err
	}
	if resp.Status != http.StatusUnauthorized {
		if resp.Status == http.StatusOK || resp.Status == http.StatusAccepted {
			return fault.New(fault.Failed, "DPS %s accepted a TPM registration of %q without authentication; it must answer 401 with an authenticationKey", c.host, c.cfg.RegistrationID)
		}
		return c.statusError(what, resp)
	}
	blob, err := ParseAuthenticationKey(resp.Body)
	if err != nil {
		// A 401 without a key is DPS refusing the enrollment: say why.
		return fault.New(fault.NotAuthorized, "DPS %s refused TPM registration of %q (HTTP 401)%s", c.host, c.cfg.RegistrationID, c.serverReason(resp))
	}
	if err := c.cfg.TPM.Import(ctx, blob); err != nil {
		return err
	}
	return nil
}
