package derivation

import (
	"bytes"
	"math/rand"
	"testing"
)

func TestEncodeSeparatesFieldsThatConcatenateAlike(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
	}{
		{"module name that is a prefix of another", []string{"sensor", "-2g1"}, []string{"sensor-2", "g1"}},
		{"empty generation", []string{"sensor-2", ""}, []string{"sensor", "-2"}},
		{"field moved across the boundary", []string{"ab", "c"}, []string{"a", "bc"}},
		{"more fields", []string{"a", "b"}, []string{"a", "b", ""}},
		{"no field and one empty field", []string{}, []string{""}},
		{"separator inside a field", []string{"a:b", "c"}, []string{"a", "b:c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ea, eb := Strings(tt.a...), Strings(tt.b...)
			if bytes.Equal(ea, eb) {
				t.Fatalf("%q and %q encode alike: %x", tt.a, tt.b, ea)
			}
			if bytes.HasPrefix(ea, eb) || bytes.HasPrefix(eb, ea) {
				t.Fatalf("one of %x and %x is a prefix of the other", ea, eb)
			}
		})
	}
}

func TestEncodeLayout(t *testing.T) {
	got := Strings("sensor", "g1")
	want := []byte{0, 0, 0, 2, 0, 0, 0, 6, 's', 'e', 'n', 's', 'o', 'r', 0, 0, 0, 2, 'g', '1'}
	if !bytes.Equal(got, want) {
		t.Fatalf("Strings(sensor, g1) = %x, want %x", got, want)
	}
}

// TestEncodeIsPrefixFreeOverRandomTuples compares many random tuples over a
// tiny alphabet (so collisions of the plain concatenation are common).
func TestEncodeIsPrefixFreeOverRandomTuples(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	tuple := func() []string {
		n := r.Intn(4)
		out := make([]string, n)
		for i := range out {
			b := make([]byte, r.Intn(4))
			for j := range b {
				b[j] = "a\x00"[r.Intn(2)]
			}
			out[i] = string(b)
		}
		return out
	}
	same := func(a, b []string) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	concatCollisions := 0
	for i := 0; i < 20000; i++ {
		a, b := tuple(), tuple()
		if same(a, b) {
			continue
		}
		ea, eb := Strings(a...), Strings(b...)
		if bytes.HasPrefix(ea, eb) || bytes.HasPrefix(eb, ea) {
			t.Fatalf("%q and %q: one encoding (%x, %x) is a prefix of the other", a, b, ea, eb)
		}
		var ca, cb []byte
		for _, f := range a {
			ca = append(ca, f...)
		}
		for _, f := range b {
			cb = append(cb, f...)
		}
		if bytes.Equal(ca, cb) {
			concatCollisions++
		}
	}
	if concatCollisions == 0 {
		t.Fatal("the random tuples never collided under plain concatenation; the test proves nothing")
	}
}
