package keys

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestECDSADEREncodesAsEncodingASN1Does(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var cases [][]byte
	for _, half := range []int{1, 32, 48, 66, 127, 128, 200, 1024} {
		for _, fill := range []func(i int) byte{
			func(int) byte { return 0 },
			func(int) byte { return 0xff },
			func(i int) byte { return byte(rnd.IntN(256)) },
			func(i int) byte { // leading zeros, then a high bit
				if i%half < half/2 {
					return 0
				}
				return 0x80
			},
		} {
			raw := make([]byte, 2*half)
			for i := range raw {
				raw[i] = fill(i)
			}
			cases = append(cases, raw)
		}
	}
	for _, raw := range cases {
		half := len(raw) / 2
		want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:half]), new(big.Int).SetBytes(raw[half:])})
		if err != nil {
			t.Fatal(err)
		}
		got, err := ecdsaDER(raw, "k")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("r||s %x:\n got %x\nwant %x", raw, got, want)
		}
	}
	for _, n := range []int{0, 3, 2*1024 + 2} {
		if _, err := ecdsaDER(make([]byte, n), "k"); err == nil {
			t.Errorf("a %d-byte r||s was encoded", n)
		}
	}
}
