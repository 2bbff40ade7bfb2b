package cloudhttp

import (
	"context"
	"crypto"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// The JSON media types the Azure IoT device APIs (DPS, IoT Hub) speak, as
// the Azure IoT C SDK sends them.
const (
	ContentTypeJSON = "application/json; charset=utf-8"
	AcceptJSON      = "application/json"
)

// NewJSONRequest builds a request to a JSON API: Accept and User-Agent
// always, Content-Type when there is a body, Authorization when auth is
// not empty.
func NewJSONRequest(ctx context.Context, method, url string, body []byte, userAgent, auth string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, Body(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", AcceptJSON)
	req.Header.Set("User-Agent", userAgent)
	if body != nil {
		req.Header.Set("Content-Type", ContentTypeJSON)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req, nil
}

// CheckCredentials checks a cloud client's credentials: exactly one of a
// SAS signer (hasSAS) and a client certificate, and a certificate with
// data whose key can sign. service names the cloud ("DPS"), who the client
// ("DPS registration \"dev-1\""), none what is missing ("attestation").
func CheckCredentials(service, who, none string, hasSAS bool, cert *tls.Certificate) error {
	switch {
	case !hasSAS && cert == nil:
		return fault.New(fault.InvalidArgs, "%s has no %s: set a SAS signer or a client certificate", who, none)
	case hasSAS && cert != nil:
		return fault.New(fault.InvalidArgs, "%s has both a SAS signer and a client certificate; use one", who)
	case cert != nil && len(cert.Certificate) == 0:
		return fault.New(fault.InvalidArgs, "%s client certificate has no certificate data", service)
	case cert != nil:
		if _, ok := cert.PrivateKey.(crypto.Signer); !ok {
			return fault.New(fault.InvalidArgs, "%s client certificate's private key (%T) cannot sign", service, cert.PrivateKey)
		}
	}
	return nil
}

// CheckAPIVersion accepts an api-version query value ("2021-04-12",
// "2025-07-01-preview"): digits, lower-case letters and '-', so it goes
// into the query unescaped and can add nothing to it.
func CheckAPIVersion(service, v string) error {
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r == '-') {
			return fault.New(fault.InvalidArgs, "%s api-version %q may hold only digits, lower-case letters and '-'", service, Printable(v))
		}
	}
	return nil
}

// Default is the rule every numeric option of a cloud client follows:
// negative is a mistake ("EST timeout -1s is negative"), zero takes def.
// Clients check theirs in order with cmp.Or, which reports the first
// mistake.
func Default[T int | time.Duration](service, name string, v *T, def T) error {
	switch {
	case *v < 0:
		return fault.New(fault.InvalidArgs, "%s %s %v is negative", service, name, *v)
	case *v == 0:
		*v = def
	}
	return nil
}

// CheckText rejects a field of a server's answer (an identifier, an etag)
// longer than max bytes or carrying control characters.
func CheckText(name, v string, max int) error {
	if len(v) > max {
		return fault.New(fault.InvalidArgs, "%s is longer than %d bytes", name, max)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fault.New(fault.InvalidArgs, "%s contains control characters", name)
		}
	}
	return nil
}
