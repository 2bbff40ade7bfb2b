package tpm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

// BenchmarkTPMSigner measures TPM2_Sign round trips through the Signer on
// swtpm (raw socket, no resource manager): the cost of a TLS handshake or
// CSR signed in the TPM.
func BenchmarkTPMSigner(b *testing.B) {
	sw := testenv.StartSwtpm(b)
	tp, err := Open(context.Background(), Config{Address: sw.Addr})
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	digest := sha256.Sum256([]byte("bench"))
	for _, alg := range []KeyAlg{AlgECCP256, AlgRSA2048} {
		if _, _, err := tp.CreateIDevID(context.Background(), alg, true); err != nil {
			b.Fatal(err)
		}
		s, err := tp.Signer(context.Background(), IDevIDHandle)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
