package tpm

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testpki"
)

// tpmSAN is a TCG EK certificate SubjectAltName: one directoryName
// holding the given attributes.
func tpmSAN(t testing.TB, attrs ...pkix.AttributeTypeAndValue) []byte {
	var rdns pkix.RDNSequence
	for _, a := range attrs {
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{a})
	}
	name, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	return san
}

var (
	attrManufacturer = pkix.AttributeTypeAndValue{Type: oidTPMManufacturer, Value: "id:4E544300"}
	attrModel        = pkix.AttributeTypeAndValue{Type: oidTPMModel, Value: "NPCT75x"}
	attrVersion      = pkix.AttributeTypeAndValue{Type: oidTPMVersion, Value: "id:00070002"}
)

// testMaker is a TPM maker's root CA.
type testMaker struct {
	*testpki.CA
	pem []byte
}

func newTestMaker(t testing.TB) *testMaker {
	t.Helper()
	ca := testpki.NewCA(t, "TPM Maker Root")
	return &testMaker{CA: ca, pem: ca.PEM()}
}

// ekCert is an EK certificate (key agreement only) with the given extra
// extensions and extended key usages, as DER.
func (m *testMaker) ekCert(t testing.TB, extra []pkix.Extension, eku []asn1.ObjectIdentifier) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement, UnknownExtKeyUsage: eku, ExtraExtensions: extra}
	return testpki.SignDER(t, tmpl, m.Cert, testpki.NewKey(t).Public(), m.Key)
}

func TestEKCertificateCriticalExtensions(t *testing.T) {
	maker := newTestMaker(t)
	ekEKU := []asn1.ObjectIdentifier{oidTCGKPEKCert}
	goodSAN := pkix.Extension{Id: oidSAN, Critical: true, Value: tpmSAN(t, attrManufacturer, attrModel, attrVersion)}
	for _, c := range []struct {
		name      string
		der       []byte
		parseErr  string
		verifyErr string
	}{
		{name: "TCGSubjectAltNameIsHandled", der: maker.ekCert(t, []pkix.Extension{goodSAN}, ekEKU)},
		{name: "TrailingNVPaddingIsCut", der: append(maker.ekCert(t, []pkix.Extension{goodSAN}, ekEKU), make([]byte, 64)...)},
		{name: "NoEKUIsAccepted", der: maker.ekCert(t, []pkix.Extension{goodSAN}, nil)},
		{name: "UnknownCriticalExtensionStillFails", der: maker.ekCert(t, []pkix.Extension{goodSAN, {Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}}, ekEKU),
			verifyErr: "critical extensions this verifier does not understand"},
		{name: "ForeignAttributeInDirectoryNameFails", der: maker.ekCert(t, []pkix.Extension{{Id: oidSAN, Critical: true, Value: tpmSAN(t, attrManufacturer, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "x"})}}, ekEKU),
			verifyErr: "critical extensions this verifier does not understand"},
		{name: "NoManufacturerFailsParse", der: maker.ekCert(t, []pkix.Extension{{Id: oidSAN, Critical: true, Value: tpmSAN(t, attrModel)}}, ekEKU),
			parseErr: "no TPM manufacturer"},
		{name: "OtherEKUIsNotAnEKCertificate", der: maker.ekCert(t, []pkix.Extension{goodSAN}, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 2}}),
			verifyErr: "not an EK certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ek, err := ParseEKCert(c.der)
			if c.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.parseErr) {
					t.Fatalf("ParseEKCert = %v; want %q", err, c.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ek.Manufacturer != "id:4E544300" {
				t.Fatalf("manufacturer = %q", ek.Manufacturer)
			}
			_, err = ek.Verify(maker.pem, time.Now())
			if c.verifyErr == "" && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.verifyErr != "" && (err == nil || !strings.Contains(err.Error(), c.verifyErr)) {
				t.Fatalf("Verify = %v; want %q", err, c.verifyErr)
			}
		})
	}
	t.Run("WithoutHandlingGoRefusesTheTCGSAN", func(t *testing.T) {
		// The reason this package parses the SAN itself.
		cert, _ := x509.ParseCertificate(maker.ekCert(t, []pkix.Extension{goodSAN}, ekEKU))
		pool := x509.NewCertPool()
		pool.AddCert(maker.Cert)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			t.Fatalf("crypto/x509 accepted the TCG SAN by itself; the explicit handling may be unnecessary")
		}
	})
}

func TestCABundleNeedsCertificates(t *testing.T) {
	for _, in := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, _, _, err := ParseCABundle([]byte(in)); err == nil {
			t.Errorf("ParseCABundle(%q) accepted it", in)
		}
	}
}

func FuzzParseEKCert(f *testing.F) {
	maker := newTestMaker(f)
	f.Add(maker.ekCert(f, []pkix.Extension{{Id: oidSAN, Critical: true, Value: tpmSAN(f, attrManufacturer, attrModel, attrVersion)}}, []asn1.ObjectIdentifier{oidTCGKPEKCert}))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		ek, err := ParseEKCert(der)
		if err != nil {
			return
		}
		if hasSAN(ek.Cert) && ek.Manufacturer == "" {
			t.Fatalf("parsed an EK certificate with a SubjectAltName but without the TPM manufacturer")
		}
		_, _ = ek.Verify(maker.pem, time.Now())
	})
}

func hasSAN(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSAN) {
			return true
		}
	}
	return false
}
