// Package derivation is the one encoding of the inputs of derived keys: a
// tuple of byte strings, length-prefixed so no two tuples encode alike.
package derivation

import "encoding/binary"

// Encode is the field count, then each field as its length and its bytes,
// all counts big-endian uint32. The encoding is injective and prefix-free:
// the count fixes how many fields follow and each length fixes where a
// field ends, so no encoding is a proper prefix of another and
// ("sensor", "-2g") never meets ("sensor-2", "g").
func Encode(fields ...[]byte) []byte {
	n := 4
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	out = binary.BigEndian.AppendUint32(out, uint32(len(fields)))
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// Strings is Encode of the bytes of each string.
func Strings(fields ...string) []byte {
	bs := make([][]byte, len(fields))
	for i, f := range fields {
		bs[i] = []byte(f)
	}
	return Encode(bs...)
}
