package est

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/edgev2/edgev2/fault"
)

// OIDs that CSR attributes commonly name (RFC 7030 4.5.2, RFC 9908).
var (
	OIDChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	OIDExtensionRequest  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	OIDECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	OIDRSAEncryption     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	OIDEd25519           = asn1.ObjectIdentifier{1, 3, 101, 112}
	OIDCurveP256         = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	OIDCurveP384         = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	OIDCurveP521         = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

var signatureAlgorithms = []struct {
	oid asn1.ObjectIdentifier
	alg x509.SignatureAlgorithm
}{
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, x509.ECDSAWithSHA256},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, x509.ECDSAWithSHA384},
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, x509.ECDSAWithSHA512},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, x509.SHA256WithRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}, x509.SHA384WithRSA},
	{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}, x509.SHA512WithRSA},
	{asn1.ObjectIdentifier{1, 3, 101, 112}, x509.PureEd25519},
}

var curves = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{OIDCurveP256, "p256"},
	{OIDCurveP384, "p384"},
	{OIDCurveP521, "p521"},
}

// Attribute is one CSR attribute the server asks for: its type and its
// values as DER, uninterpreted.
type Attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue
}

// CSRAttrs is a parsed CsrAttrs (RFC 7030 4.5.2): bare OIDs (information
// the server wants, or the signature algorithm it expects) and attributes
// with values (for example a key algorithm with its curve).
type CSRAttrs struct {
	OIDs       []asn1.ObjectIdentifier
	Attributes []Attribute
}

// KeyHint is the key the server asks the client to use.
type KeyHint struct {
	Algorithm asn1.ObjectIdentifier // OIDECPublicKey, OIDRSAEncryption or OIDEd25519
	Curve     asn1.ObjectIdentifier // for EC, when the server names one
	RSABits   int                   // for RSA, when the server names a size
}

// Type names the hint in the Keys service's vocabulary ("ec-p384",
// "rsa-3072", "ed25519"), or "" when it is incomplete (EC without a known
// curve, RSA without a size) or unknown.
func (h KeyHint) Type() string {
	switch {
	case h.Algorithm.Equal(OIDECPublicKey):
		for _, c := range curves {
			if h.Curve.Equal(c.oid) {
				return "ec-" + c.name
			}
		}
	case h.Algorithm.Equal(OIDRSAEncryption):
		if h.RSABits > 0 {
			return fmt.Sprintf("rsa-%d", h.RSABits)
		}
	case h.Algorithm.Equal(OIDEd25519):
		return "ed25519"
	}
	return ""
}

// ParseCSRAttrs parses a csrattrs body: base64 (whitespace ignored) or DER
// of CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID. Errors are
// fault.InvalidArgs and say what is wrong.
func ParseCSRAttrs(body []byte) (*CSRAttrs, error) {
	der, err := decodeBody(body)
	if err != nil {
		return nil, err
	}
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "CSR attributes are not valid DER")
	}
	if len(rest) > 0 {
		return nil, fault.New(fault.InvalidArgs, "CSR attributes have %d bytes of trailing data", len(rest))
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, fault.New(fault.InvalidArgs, "CSR attributes are not a SEQUENCE")
	}
	attrs := &CSRAttrs{}
	for i, in := 1, seq.Bytes; len(in) > 0; i++ {
		var elem asn1.RawValue
		in, err = asn1.Unmarshal(in, &elem)
		if err != nil {
			return nil, fault.Wrap(fault.InvalidArgs, err, "CSR attribute %d is not valid DER", i)
		}
		switch {
		case elem.Class == asn1.ClassUniversal && elem.Tag == asn1.TagOID:
			var oid asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(elem.FullBytes, &oid); err != nil {
				return nil, fault.Wrap(fault.InvalidArgs, err, "CSR attribute %d is a malformed OID", i)
			}
			attrs.OIDs = append(attrs.OIDs, oid)
		case elem.Class == asn1.ClassUniversal && elem.Tag == asn1.TagSequence && elem.IsCompound:
			var a struct {
				Type   asn1.ObjectIdentifier
				Values []asn1.RawValue `asn1:"set"`
			}
			rest, err := asn1.Unmarshal(elem.FullBytes, &a)
			if err != nil || len(rest) > 0 {
				return nil, fault.Wrap(fault.InvalidArgs, err, "CSR attribute %d is not an Attribute (type and SET of values)", i)
			}
			if len(a.Values) == 0 {
				return nil, fault.New(fault.InvalidArgs, "CSR attribute %d (%v) has no values", i, a.Type)
			}
			attrs.Attributes = append(attrs.Attributes, Attribute{Type: a.Type, Values: a.Values})
		default:
			return nil, fault.New(fault.InvalidArgs, "CSR attribute %d is neither an OID nor an Attribute", i)
		}
	}
	return attrs, nil
}

// Has reports whether the server names oid, bare or as an attribute type.
func (a *CSRAttrs) Has(oid asn1.ObjectIdentifier) bool {
	if a == nil {
		return false
	}
	for _, o := range a.OIDs {
		if o.Equal(oid) {
			return true
		}
	}
	_, ok := a.Attribute(oid)
	return ok
}

// Attribute returns the first attribute of type oid.
func (a *CSRAttrs) Attribute(oid asn1.ObjectIdentifier) (Attribute, bool) {
	if a == nil {
		return Attribute{}, false
	}
	for _, at := range a.Attributes {
		if at.Type.Equal(oid) {
			return at, true
		}
	}
	return Attribute{}, false
}

// ChallengePasswordRequested reports whether the server wants the CSR to
// carry a challengePassword (RFC 7030 3.5 uses it for tls-unique binding).
func (a *CSRAttrs) ChallengePasswordRequested() bool {
	return a.Has(OIDChallengePassword)
}

// KeyHint returns the key algorithm the server asks for: an attribute
// id-ecPublicKey with a curve OID or rsaEncryption with a size (RFC 7030
// 4.5.2, RFC 9908), else a bare algorithm or curve OID.
func (a *CSRAttrs) KeyHint() (KeyHint, bool) {
	if a == nil {
		return KeyHint{}, false
	}
	for _, at := range a.Attributes {
		switch {
		case at.Type.Equal(OIDECPublicKey):
			var curve asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(at.Values[0].FullBytes, &curve); err == nil {
				return KeyHint{Algorithm: OIDECPublicKey, Curve: curve}, true
			}
			return KeyHint{Algorithm: OIDECPublicKey}, true
		case at.Type.Equal(OIDRSAEncryption):
			var bits *big.Int
			if _, err := asn1.Unmarshal(at.Values[0].FullBytes, &bits); err == nil && bits.Sign() > 0 && bits.IsInt64() && bits.Int64() <= 1<<16 {
				return KeyHint{Algorithm: OIDRSAEncryption, RSABits: int(bits.Int64())}, true
			}
			return KeyHint{Algorithm: OIDRSAEncryption}, true
		}
	}
	for _, o := range a.OIDs {
		for _, c := range curves {
			if o.Equal(c.oid) {
				return KeyHint{Algorithm: OIDECPublicKey, Curve: o}, true
			}
		}
		if o.Equal(OIDECPublicKey) || o.Equal(OIDRSAEncryption) || o.Equal(OIDEd25519) {
			return KeyHint{Algorithm: o}, true
		}
	}
	return KeyHint{}, false
}

// SignatureAlgorithm returns the first CSR signature algorithm the server
// names as a bare OID (ecdsa-with-SHA384 in RFC 7030's example), or
// x509.UnknownSignatureAlgorithm.
func (a *CSRAttrs) SignatureAlgorithm() x509.SignatureAlgorithm {
	if a == nil {
		return x509.UnknownSignatureAlgorithm
	}
	for _, o := range a.OIDs {
		for _, s := range signatureAlgorithms {
			if o.Equal(s.oid) {
				return s.alg
			}
		}
	}
	return x509.UnknownSignatureAlgorithm
}

// ExtensionRequests returns the OIDs of the extensions the server wants in
// the CSR's extensionRequest attribute. RFC 7030's example lists them as
// bare OIDs; RFC 9908 as an Extensions template, whose extnIDs are returned.
func (a *CSRAttrs) ExtensionRequests() []asn1.ObjectIdentifier {
	at, ok := a.Attribute(OIDExtensionRequest)
	if !ok {
		return nil
	}
	var out []asn1.ObjectIdentifier
	for _, v := range at.Values {
		var oid asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(v.FullBytes, &oid); err == nil && len(rest) == 0 {
			out = append(out, oid)
			continue
		}
		var exts []struct {
			ID       asn1.ObjectIdentifier
			Critical bool `asn1:"optional"`
			Value    []byte
		}
		if rest, err := asn1.Unmarshal(v.FullBytes, &exts); err == nil && len(rest) == 0 {
			for _, e := range exts {
				out = append(out, e.ID)
			}
		}
	}
	return out
}
