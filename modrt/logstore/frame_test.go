package logstore

import (
	"bytes"
	"testing"
)

func TestFramedText(t *testing.T) {
	in := []byte{1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', '\n', 2, 0, 0, 0, 0, 0, 0, 2, 'c', '\n'}
	got, err := FramedText(bytes.NewReader(in))
	if err != nil || got != "ab\nc\n" {
		t.Fatalf("FramedText = %q, %v", got, err)
	}
	if _, err := ParseFrames(bytes.NewReader([]byte{3, 0, 0, 0, 0, 0, 0, 0})); err == nil {
		t.Fatal("a bad stream byte was accepted")
	}
}
