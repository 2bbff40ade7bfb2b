// Package sas builds and parses the shared access signature tokens that
// Azure IoT Hub and the Device Provisioning Service accept from devices.
package sas

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// Signer returns HMAC-SHA256(key, data) for a key it holds; the key itself
// never reaches this package (the Keys service signs over D-Bus).
type Signer func(ctx context.Context, data []byte) ([]byte, error)

// DPSKeyName is the skn that DPS requires on a device's registration token.
const DPSKeyName = "registration"

const prefix = "SharedAccessSignature "

// Token returns "SharedAccessSignature sr=<sr>&sig=<sig>&se=<se>[&skn=<skn>]"
// in the order and encoding of the Azure IoT C and Python device SDKs and
// aziot-identityd: sr is resourceURI percent-encoded as a whole (everything
// but RFC 3986 unreserved characters, upper-case hex), the signed string is
// "<sr>\n<se>", se is the expiry in Unix seconds, and sig is the base64 of
// the HMAC, percent-encoded the same way. keyName is "" for IoT Hub device
// and module tokens and DPSKeyName for DPS registration tokens.
func Token(ctx context.Context, sign Signer, resourceURI string, expiry time.Time, keyName string) (string, error) {
	if sign == nil {
		return "", fault.New(fault.InvalidArgs, "SAS token for %q: no signer", resourceURI)
	}
	if resourceURI == "" {
		return "", fault.New(fault.InvalidArgs, "SAS token: resource URI is empty")
	}
	if expiry.Unix() <= 0 {
		return "", fault.New(fault.InvalidArgs, "SAS token for %q: expiry %v is not after 1970", resourceURI, expiry)
	}
	sr := Escape(resourceURI)
	se := strconv.FormatInt(expiry.Unix(), 10)
	mac, err := sign(ctx, []byte(sr+"\n"+se))
	if err != nil {
		return "", fault.Wrap(fault.KindOf(err), err, "SAS token for %q: signing failed: %s", resourceURI, fault.Message(err))
	}
	if len(mac) == 0 {
		return "", fault.New(fault.Failed, "SAS token for %q: signer returned an empty signature", resourceURI)
	}
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString("sr=")
	b.WriteString(sr)
	b.WriteString("&sig=")
	b.WriteString(Escape(base64.StdEncoding.EncodeToString(mac)))
	b.WriteString("&se=")
	b.WriteString(se)
	if keyName != "" {
		b.WriteString("&skn=")
		b.WriteString(Escape(keyName))
	}
	return b.String(), nil
}

// DeviceResource is the resource URI of a device's IoT Hub token.
func DeviceResource(hubHost, deviceID string) string {
	return hubHost + "/devices/" + deviceID
}

// ModuleResource is the resource URI of a module's IoT Hub token.
func ModuleResource(hubHost, deviceID, moduleID string) string {
	return hubHost + "/devices/" + deviceID + "/modules/" + moduleID
}

// DPSResource is the resource URI of a device's DPS registration token.
func DPSResource(idScope, registrationID string) string {
	return idScope + "/registrations/" + registrationID
}

// Escape percent-encodes every byte of s outside the RFC 3986 unreserved
// set (A-Z a-z 0-9 - . _ ~) with upper-case hex, as Python's
// urllib.parse.quote(s, safe="") does; a space becomes %20, never '+'.
func Escape(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	out := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			out = append(out, c)
			continue
		}
		out = append(out, '%', hex[c>>4], hex[c&15])
	}
	return string(out)
}

func unreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
