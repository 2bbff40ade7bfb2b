package revocation

import (
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testpki"
)

// crlCA is a CA that may sign CRLs.
type crlCA struct{ *testpki.CA }

func newCRLCA(t testing.TB, cn string) *crlCA {
	t.Helper()
	return &crlCA{testpki.NewCA(t, cn, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign })}
}

// leaf is a certificate for device-1 numbered serial.
func (c *crlCA) leaf(t testing.TB, serial int64) *x509.Certificate {
	t.Helper()
	return c.Issue(t, "device-1", testpki.NewKey(t).Public(), &x509.Certificate{SerialNumber: big.NewInt(serial)})
}

func (c *crlCA) crl(t testing.TB, next time.Time, serials ...int64) []byte {
	rl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: next}
	for _, s := range serials {
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, c.Cert, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCheckRevokedVerifiesTheCRLAgainstTheIssuer(t *testing.T) {
	ca, other := newCRLCA(t, "EST CA"), newCRLCA(t, "EST CA") // same name, another key
	leaf := ca.leaf(t, 42)
	later := time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		crl     []byte
		issuers []*x509.Certificate
		revoked bool
		fails   bool
	}{
		{"listed", ca.crl(t, later, 7, 42), []*x509.Certificate{ca.Cert}, true, false},
		{"not listed", ca.crl(t, later, 7), []*x509.Certificate{ca.Cert}, false, false},
		{"signed by an impostor with the CA's name", other.crl(t, later, 42), []*x509.Certificate{ca.Cert}, false, true},
		{"impostor offered as issuer", other.crl(t, later, 42), []*x509.Certificate{other.Cert}, false, true},
		{"stale", ca.crl(t, time.Now().Add(-time.Second), 42), []*x509.Certificate{ca.Cert}, false, true},
		{"no issuer known", ca.crl(t, later, 42), nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crl, err := ParseCRL(tt.crl)
			if err != nil {
				t.Fatal(err)
			}
			revoked, err := CheckRevoked(crl, leaf, tt.issuers, time.Now())
			if tt.fails {
				if err == nil || !fault.Is(err, fault.Failed) {
					t.Fatalf("revoked=%v err=%v; want a Failed error", revoked, err)
				}
				return
			}
			if err != nil || revoked != tt.revoked {
				t.Fatalf("revoked=%v err=%v; want %v", revoked, err, tt.revoked)
			}
		})
	}
}

// FuzzCheckRevoked: a CRL body from the network never panics the check,
// and only a CRL signed by the issuer can say "revoked".
func FuzzCheckRevoked(f *testing.F) {
	ca, impostor := newCRLCA(f, "EST CA"), newCRLCA(f, "EST CA")
	leaf := ca.leaf(f, 42)
	f.Add(ca.crl(f, time.Now().Add(time.Hour), 42))
	f.Add(impostor.crl(f, time.Now().Add(time.Hour), 42))
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		crl, err := ParseCRL(body)
		if err != nil {
			return
		}
		revoked, err := CheckRevoked(crl, leaf, []*x509.Certificate{ca.Cert}, time.Now())
		if revoked && (err != nil || crl.CheckSignatureFrom(ca.Cert) != nil) {
			t.Fatal("revoked by a CRL the CA did not sign")
		}
	})
}
