package keys_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/keys"
)

// A peer that pipelines calls and never reads the replies must not hold
// keyd's session goroutines (the reader, its calls in flight, shared pool
// workers among them) for as long as it keeps the socket open: keyd closes
// the session once a reply cannot be written in time.
func TestSessionPeerThatNeverReadsIsClosed(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "k")
	restore := keys.SetSessionWriteTimeout(300 * time.Millisecond)
	t.Cleanup(restore)
	c, _ := rawSession(t, k) // the replies are never read
	ping := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(godbus.ObjectPath("/")),
		godbus.FieldInterface: godbus.MakeVariant("org.freedesktop.DBus.Peer"),
		godbus.FieldMember:    godbus.MakeVariant("Ping"),
	}}
	var one bytes.Buffer
	if err := ping.EncodeTo(&one, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	batch := bytes.Repeat(one.Bytes(), 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 { // up to a million calls: far more replies than a socket buffer holds
			if _, err := c.Write(batch); err != nil {
				return // keyd closed the session (or the test ended)
			}
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for k.api.SessionGoroutines() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d session goroutines still held by a peer that never reads", k.api.SessionGoroutines())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Close()
	<-done
	// Other sessions are served.
	rc, err := openRawSession(t, k.bus.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	pc := peer(t, rc)
	if err := signOn(pc, "k"); err != nil {
		t.Fatalf("Sign on a new session: %v", err)
	}
}
