package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/edgev2/edgev2/fault"
)

// oidChallengePassword is PKCS#9 challengePassword (RFC 2985 5.4.1).
var oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}

// maxChallengePassword is the ub-challengePassword of RFC 2985.
const maxChallengePassword = 255

// csrInfo is CertificationRequestInfo (RFC 2986 4.1) with its parts raw.
type csrInfo struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes []asn1.RawValue `asn1:"tag:0"`
}

// csrOuter is CertificationRequest (RFC 2986 4.2) with its parts raw.
type csrOuter struct {
	Info      asn1.RawValue
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

// WithChallengePassword re-signs csrDER with signer, adding the PKCS#9
// challengePassword attribute (a UTF8String) that some EST servers ask for
// in /csrattrs to tie an enrollment to a shared secret.
func WithChallengePassword(csrDER []byte, signer crypto.Signer, password string) ([]byte, error) {
	if err := checkChallengePassword(password); err != nil {
		return nil, err
	}
	var outer csrOuter
	if rest, err := asn1.Unmarshal(csrDER, &outer); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("add challengePassword: the request does not parse: %v", err)
	}
	var info csrInfo
	if rest, err := asn1.Unmarshal(outer.Info.FullBytes, &info); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("add challengePassword: the request info does not parse: %v", err)
	}
	value, err := asn1.MarshalWithParams(password, "utf8")
	if err != nil {
		return nil, err
	}
	attr, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}{oidChallengePassword, []asn1.RawValue{{FullBytes: value}}})
	if err != nil {
		return nil, err
	}
	info.Attributes = append(info.Attributes, asn1.RawValue{FullBytes: attr})
	tbs, err := asn1.Marshal(info)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	hash := crypto.SHA256
	if csr.SignatureAlgorithm == x509.ECDSAWithSHA384 {
		hash = crypto.SHA384
	}
	h := hash.New()
	h.Write(tbs)
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, fmt.Errorf("sign the certificate request: %w", err)
	}
	der, err := asn1.Marshal(csrOuter{Info: asn1.RawValue{FullBytes: tbs}, Algorithm: outer.Algorithm,
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		return nil, err
	}
	if _, err := ParseCSR(der); err != nil { // the signature must verify, the request must stay parseable
		return nil, fmt.Errorf("add challengePassword: %w", err)
	}
	return der, nil
}

func checkChallengePassword(pw string) error {
	switch {
	case pw == "":
		return fault.New(fault.InvalidArgs, "the EST challenge password is empty")
	case len(pw) > maxChallengePassword:
		return fault.New(fault.InvalidArgs, "the EST challenge password is longer than %d bytes", maxChallengePassword)
	case !utf8.ValidString(pw):
		return fault.New(fault.InvalidArgs, "the EST challenge password is not UTF-8")
	}
	for _, r := range pw {
		if !unicode.IsPrint(r) {
			return fault.New(fault.InvalidArgs, "the EST challenge password contains non-printable characters")
		}
	}
	return nil
}

// readChallengePassword reads the secret from its file, without a
// trailing newline. Errors name the file, never its content.
func readChallengePassword(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fault.Wrap(fault.Unavailable, err, "EST challenge password file %s cannot be read", path)
	}
	if fi.Size() > 4*maxChallengePassword {
		return "", fault.New(fault.InvalidArgs, "EST challenge password file %s is too large", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fault.Wrap(fault.Unavailable, err, "EST challenge password file %s cannot be read", path)
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if err := checkChallengePassword(pw); err != nil {
		return "", fault.New(fault.InvalidArgs, "EST challenge password file %s: %s", path, fault.Message(err))
	}
	return pw, nil
}
