package est

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/smallstep/pkcs7"
)

// Media types of RFC 7030 section 3.2.4 (and RFC 5280 for the CRL).
const (
	mediaPKCS10    = "application/pkcs10"
	mediaCertsOnly = "application/pkcs7-mime; smime-type=certs-only"
	mediaCSRAttrs  = "application/csrattrs"
	mediaPKCS8     = "application/pkcs8"
	mediaCRL       = "application/pkix-crl"
)

// decodeBase64 decodes an EST body: base64 of DER, with any whitespace
// or line breaks (RFC 8951 section 3.2.2) and with or without padding.
// Content-Transfer-Encoding is ignored: EST bodies are always base64.
func decodeBase64(body []byte) ([]byte, error) {
	compact := make([]byte, 0, len(body))
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n', '\v', '\f':
			continue
		}
		compact = append(compact, c)
	}
	switch {
	case len(compact) == 0:
		return nil, errors.New("the body is empty; send the base64 encoding of the DER structure")
	case bytes.HasPrefix(compact, []byte("-----BEGIN")):
		return nil, errors.New("the body is PEM; send the base64 encoding of the DER only, without the -----BEGIN/END----- lines")
	case compact[0] == '<':
		return nil, errors.New("the body looks like HTML or XML, not base64")
	}
	enc := base64.StdEncoding
	if len(compact)%4 != 0 && !bytes.ContainsRune(compact, '=') {
		enc = base64.RawStdEncoding
	}
	der := make([]byte, enc.DecodedLen(len(compact)))
	n, err := enc.Decode(der, compact)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("the body is not valid base64 (bad input at byte %d of the base64 text without whitespace)", int64(ce))
		}
		return nil, fmt.Errorf("the body is not valid base64: %v", err)
	}
	return der[:n], nil
}

// encodeBase64 writes base64 in 64-character lines ending in LF, the way
// RFC 7030's examples do; RFC 8951 clients accept any whitespace.
func encodeBase64(der []byte) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	b.Grow(len(s) + len(s)/64 + 1)
	for len(s) > 64 {
		b.WriteString(s[:64])
		b.WriteByte('\n')
		s = s[64:]
	}
	b.WriteString(s)
	b.WriteByte('\n')
	return b.Bytes()
}

// parseCSR decodes and checks an application/pkcs10 body.
func parseCSR(body []byte) (*x509.CertificateRequest, error) {
	der, err := decodeBase64(body)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("the body is not a DER PKCS#10 certification request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certification request's signature does not verify: %v", err)
	}
	return csr, nil
}

// certsOnly is a degenerate PKCS#7 SignedData holding certs (RFC 7030 4.1.3).
func certsOnly(certs ...*x509.Certificate) ([]byte, error) {
	var raw []byte
	for _, c := range certs {
		raw = append(raw, c.Raw...)
	}
	return pkcs7.DegenerateCertificate(raw)
}

// parseCertsOnly is the client side of certsOnly, for tests and tools.
func parseCertsOnly(der []byte) ([]*x509.Certificate, error) {
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, err
	}
	if len(p7.Certificates) == 0 {
		return nil, errors.New("no certificates in the PKCS#7 structure")
	}
	return p7.Certificates, nil
}

// attribute is one Attribute of RFC 7030 4.5.2's AttrOrOID whose values are OIDs.
type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.ObjectIdentifier `asn1:"set"`
}

// encodeCSRAttrs builds CsrAttrs ::= SEQUENCE OF AttrOrOID from config
// entries: "OID" or "name", or "OID=OID,OID" for an attribute. It returns
// nil for no entries.
func encodeCSRAttrs(entries []string) ([]byte, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	items := make([]asn1.RawValue, 0, len(entries))
	for _, e := range entries {
		typ, vals, isAttr := strings.Cut(e, "=")
		t, err := parseOID(typ)
		if err != nil {
			return nil, err
		}
		var der []byte
		if !isAttr {
			der, err = asn1.Marshal(t)
		} else {
			a := attribute{Type: t}
			for _, v := range strings.Split(vals, ",") {
				o, err := parseOID(v)
				if err != nil {
					return nil, err
				}
				a.Values = append(a.Values, o)
			}
			der, err = asn1.Marshal(a)
		}
		if err != nil {
			return nil, fmt.Errorf("encode %q: %v", e, err)
		}
		items = append(items, asn1.RawValue{FullBytes: der})
	}
	return asn1.Marshal(items)
}
