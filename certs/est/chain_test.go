package est

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// hierarchy is a root, an intermediate under it and a leaf under that.
func hierarchy(t testing.TB, name string) (root, inter, leaf *x509.Certificate) {
	rootCA := newCA(t, name+" root")
	interCA := rootCA.SubCA(t, name+" issuing CA")
	leaf = interCA.Issue(t, "device-1", newKey(t).Public(), nil)
	return rootCA.Cert, interCA.Cert, leaf
}

func TestBuildChainCompletesFromCACertsWithoutTheRoot(t *testing.T) {
	root, inter, leaf := hierarchy(t, "lab")
	otherRoot, otherInter, _ := hierarchy(t, "other")
	anchors := x509.NewCertPool()
	anchors.AddCert(root)
	tests := []struct {
		name    string
		extra   []*x509.Certificate
		caCerts []*x509.Certificate
		anchors *x509.CertPool
		want    []*x509.Certificate
		fails   bool
	}{
		{name: "cacerts has intermediate and root", caCerts: []*x509.Certificate{inter, root}, want: []*x509.Certificate{leaf, inter}},
		{name: "cacerts root first", caCerts: []*x509.Certificate{root, inter}, want: []*x509.Certificate{leaf, inter}},
		{name: "intermediate in the enroll answer, root anchored", extra: []*x509.Certificate{inter}, anchors: anchors, want: []*x509.Certificate{leaf, inter}},
		{name: "root and intermediate in the enroll answer", extra: []*x509.Certificate{root, inter}, want: []*x509.Certificate{leaf, inter}},
		{name: "cacerts from another CA", caCerts: []*x509.Certificate{otherInter, otherRoot}, fails: true},
		{name: "cacerts without the intermediate", caCerts: []*x509.Certificate{root}, fails: true},
		{name: "nothing to anchor it", caCerts: []*x509.Certificate{inter}, fails: true},
		{name: "anchors of another CA", caCerts: []*x509.Certificate{inter, otherRoot}, anchors: anchors, want: []*x509.Certificate{leaf, inter}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BuildChain(leaf, tt.extra, tt.caCerts, tt.anchors, time.Now())
			if tt.fails {
				if err == nil || !fault.Is(err, fault.Failed) {
					t.Fatalf("got chain of %d, err %v; want a Failed error", len(got), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("chain of %d, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Fatalf("chain[%d] = %v, want %v", i, got[i].Subject, tt.want[i].Subject)
				}
			}
		})
	}
}

func TestBuildChainRefusesExpiredIntermediateAndTooManyCerts(t *testing.T) {
	root, inter, leaf := hierarchy(t, "lab")
	if _, err := BuildChain(leaf, nil, []*x509.Certificate{inter, root}, nil, time.Now().Add(2*time.Hour)); err == nil {
		t.Fatal("a chain past its notAfter was accepted")
	}
	many := make([]*x509.Certificate, MaxChainCerts+1)
	for i := range many {
		many[i] = inter
	}
	if _, err := BuildChain(leaf, nil, many, nil, time.Now()); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("%d CA certificates: %v, want InvalidArgs", len(many), err)
	}
}

// FuzzBuildChainFromCACerts feeds a /cacerts body from the network to the
// chain builder: it must never panic, and whatever it accepts verifies.
func FuzzBuildChainFromCACerts(f *testing.F) {
	root, inter, leaf := hierarchy(f, "fuzz")
	f.Add(certsOnly(f, inter, root))
	f.Add(certsOnly(f, root))
	f.Add([]byte("MIIB"))
	f.Fuzz(func(t *testing.T, body []byte) {
		caCerts, err := ParseCertsOnly(body)
		if err != nil {
			return
		}
		chain, err := BuildChain(leaf, nil, caCerts, nil, time.Now())
		if err != nil {
			return
		}
		if !chain[0].Equal(leaf) {
			t.Fatal("the chain does not start with the leaf")
		}
		for i := 1; i < len(chain); i++ {
			if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
				t.Fatalf("chain[%d] is not signed by chain[%d]", i-1, i)
			}
		}
	})
}
