package credential

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
)

// Sealing names of what an encrypted credential is bound to.
const (
	SealTPM2Host = "tpm2+host"
	SealHost     = "host"
	SealTPM2     = "tpm2"
	SealNull     = "null" // systemd's "no key at all" form: not sealed
)

// sealingByID maps the 16-byte id that opens every systemd encrypted
// credential (systemd's src/shared/creds-util.h) to what it is bound to.
var sealingByID = map[string]string{
	"5a1c6a86df9d4096b1d5a65e0862f19a": SealHost,
	"55b9ed1d38594d43a8319d2ebb332ac6": SealHost, // scoped (systemd 256+)
	"0c7cc07b117645919c4b0bea08bc20fe": SealTPM2,
	"faf7eb9341e3412ca1a436f95a29362f": SealTPM2, // with a PCR public key
	"93a894094874449090caf2fc93cab553": SealTPM2Host,
	"ef4ac13679a9480ea7db68897f9f165d": SealTPM2Host, // scoped
	"af4950a849134eb1a73846304ff30c05": SealTPM2Host, // with a PCR public key
	"058469daf6f54324800549da0f8ea2fb": SealNull,
}

// Sealing reads what an encrypted credential file (systemd-creds encrypt's
// output, base64 or binary) is sealed to from its header, without
// decrypting it; "" when data is not one.
func Sealing(data []byte) string {
	head := data
	if raw, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(data), nil))); err == nil {
		head = raw
	}
	if len(head) < 16 {
		return ""
	}
	return sealingByID[hex.EncodeToString(head[:16])]
}
