package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

func response(rc tpm2.TPMRC, body []byte) []byte {
	r := make([]byte, 10+len(body))
	binary.BigEndian.PutUint16(r[0:2], 0x8001)
	binary.BigEndian.PutUint32(r[2:6], uint32(len(r)))
	binary.BigEndian.PutUint32(r[6:10], uint32(rc))
	copy(r[10:], body)
	return r
}

// fakeTPM answers each 10-byte command with the next of answers, written
// in pieces of at most chunk bytes, a millisecond apart.
func fakeTPM(t *testing.T, chunk int, answers ...[]byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for _, a := range answers {
			if _, err := io.ReadFull(c, make([]byte, 10)); err != nil {
				return
			}
			for len(a) > 0 {
				n := min(chunk, len(a))
				c.Write(a[:n])
				a = a[n:]
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return l.Addr().String()
}

func TestSocketResponsesAreReadWholeAndRetriedWhileTheTPMAsks(t *testing.T) {
	want := response(tpm2.TPMRCSuccess, bytes.Repeat([]byte{0xab}, 3000))
	addr := fakeTPM(t, 7, response(tpm2.TPMRCRetry, nil), response(tpm2.TPMRCYielded, nil), want)
	tpm, err := OpenTransport(t.Context(), "", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	got, err := tpm.Send(make([]byte, 10))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Send = %d bytes, %v; want the 3010-byte success after two retries", len(got), err)
	}
}

func TestSocketRefusesAResponseThatIsNotTPM2(t *testing.T) {
	bad := response(tpm2.TPMRCSuccess, nil)
	binary.BigEndian.PutUint32(bad[2:6], 1<<20)
	tpm, err := OpenTransport(t.Context(), "", fakeTPM(t, 100, bad))
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	if _, err := tpm.Send(make([]byte, 10)); err == nil {
		t.Fatal("a 1 MiB response size was accepted")
	}
}

func TestOpenTransportSaysWhyTheTPMIsAbsent(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	cases := []struct {
		device, address string
		want            Failure
	}{
		{"", closed, SocketAbsent},
		{filepath.Join(t.TempDir(), "tpmrm9"), "", DeviceAbsent},
	}
	for _, c := range cases {
		_, err := OpenTransport(context.Background(), c.device, c.address)
		var oe *ConnError
		if !errors.As(err, &oe) || oe.Failure != c.want || oe.Reason == "" {
			t.Errorf("Open(%q, %q) = %v; want failure %d with a reason", c.device, c.address, err, c.want)
		}
	}
}
