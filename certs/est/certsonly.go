package est

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"

	"github.com/smallstep/pkcs7"

	"github.com/edgev2/edgev2/fault"
)

// ParseCertsOnly parses an EST certificate response: a PKCS#7 certs-only
// (degenerate SignedData) message in base64, with or without line breaks
// (RFC 8951). Raw DER and PEM are accepted too, for servers that send them.
// Errors are fault.InvalidArgs and say what is wrong with body.
func ParseCertsOnly(body []byte) ([]*x509.Certificate, error) {
	der, err := decodeBody(body)
	if err != nil {
		return nil, err
	}
	p7, err := parsePKCS7(der)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "not a PKCS#7 message (or it is truncated)")
	}
	if len(p7.Signers) > 0 || len(p7.Content) > 0 {
		return nil, fault.New(fault.InvalidArgs, "PKCS#7 message is not certs-only: it has signers or content")
	}
	if len(p7.Certificates) == 0 {
		return nil, fault.New(fault.InvalidArgs, "PKCS#7 message holds no certificate")
	}
	return p7.Certificates, nil
}

// parsePKCS7 runs the PKCS#7 parser on untrusted bytes; a panic in it
// becomes an error instead of taking the service down.
func parsePKCS7(der []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("pkcs7 parser panicked: %v", r)
		}
	}()
	return pkcs7.Parse(der)
}

// decodeBody turns an EST body into DER: base64 (whitespace ignored,
// padding optional), PEM, or DER as sent.
func decodeBody(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fault.New(fault.InvalidArgs, "body is empty")
	}
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		block, _ := pem.Decode(trimmed)
		if block == nil {
			return nil, fault.New(fault.InvalidArgs, "body looks like PEM but does not decode")
		}
		return block.Bytes, nil
	}
	if compact, ok := base64Text(trimmed); ok {
		enc := base64.StdEncoding
		if !bytes.HasSuffix(compact, []byte("=")) && len(compact)%4 != 0 {
			enc = base64.RawStdEncoding
		}
		der := make([]byte, enc.DecodedLen(len(compact)))
		n, err := enc.Decode(der, compact)
		if err != nil {
			return nil, fault.Wrap(fault.InvalidArgs, err, "body is not valid base64")
		}
		if n == 0 {
			return nil, fault.New(fault.InvalidArgs, "body decodes to nothing")
		}
		return der[:n], nil
	}
	if body[0] == 0x30 { // a DER SEQUENCE: the server skipped the base64
		return body, nil
	}
	if trimmed[0] == '<' {
		return nil, fault.New(fault.InvalidArgs, "body is HTML or XML, not base64 or DER")
	}
	return nil, fault.New(fault.InvalidArgs, "body is neither base64 nor DER")
}

// base64Text returns b without whitespace if all that is left is base64
// alphabet and padding.
func base64Text(b []byte) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			out = append(out, c)
		case c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return nil, false
		}
	}
	return out, len(out) > 0
}

// parseCertsResponse checks and parses a 200 carrying certificates.
func (c *Client) parseCertsResponse(op string, r *response) ([]*x509.Certificate, error) {
	// application/x-pkcs7-mime is the pre-RFC 5751 name some servers still use.
	if err := checkMediaType(r.Header, "application/pkcs7-mime", "application/x-pkcs7-mime"); err != nil {
		return nil, c.invalidResponse(op, err)
	}
	certs, err := ParseCertsOnly(r.Body)
	if err != nil {
		return nil, c.invalidResponse(op, err)
	}
	return certs, nil
}
