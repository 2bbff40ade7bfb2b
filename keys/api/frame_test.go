package api

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestParseFrame(t *testing.T) {
	// A method call, little endian: body 8 bytes, serial 7, header fields 13
	// bytes (padded to 16).
	le := []byte{'l', 1, 0x2, 1, 8, 0, 0, 0, 7, 0, 0, 0, 13, 0, 0, 0}
	be := []byte{'B', 2, 0, 1, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 16}
	huge := []byte{'l', 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name string
		in   []byte
		want Frame
		err  error
	}{
		{"little endian", le, Frame{Order: binary.LittleEndian, Type: 1, Flags: 2, Serial: 7, Length: 16 + 16 + 8}, nil},
		{"big endian", be, Frame{Order: binary.BigEndian, Type: 2, Serial: 7, Length: 16 + 16 + 8}, nil},
		{"lengths at their maximum do not wrap", huge, Frame{Order: binary.LittleEndian, Type: 1, Serial: 1,
			Length: 16 + (1<<32-1+7)&^7 + (1<<32 - 1)}, nil},
		{"a byte order that is none", append([]byte{'x'}, le[1:]...), Frame{}, ErrByteOrder},
		{"fifteen bytes", le[:15], Frame{}, ErrShortFrame},
		{"nothing", nil, Frame{}, ErrShortFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrame(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("ParseFrame = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{'l', 1, 0, 1, 8, 0, 0, 0, 7, 0, 0, 0, 13, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			return
		}
		if len(b) < 16 || fr.Length < 16 || fr.Length > 16+(1<<32+7)+(1<<32) {
			t.Fatalf("ParseFrame(%x) = %+v", b, fr)
		}
	})
}
