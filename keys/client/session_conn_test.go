package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/api"
)

// fakeKeyd is the far end of a session socket: it answers the handshake
// and hands each call it reads to the test.
type fakeKeyd struct {
	conn  net.Conn
	calls chan *godbus.Message

	mu   sync.Mutex
	gate chan struct{} // non-nil: reads wait until it closes
}

// pause stops keyd reading (after the read under way, if any), as a busy
// keyd would: what the client writes piles up in the socket.
func (k *fakeKeyd) pause() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gate == nil {
		k.gate = make(chan struct{})
	}
}

// resume lets keyd read again.
func (k *fakeKeyd) resume() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gate != nil {
		close(k.gate)
		k.gate = nil
	}
}

// Read is the socket's, held while keyd is paused.
func (k *fakeKeyd) Read(p []byte) (int, error) {
	k.mu.Lock()
	g := k.gate
	k.mu.Unlock()
	if g != nil {
		<-g
	}
	return k.conn.Read(p)
}

// newFakeSession connects a sessionConn to a fakeKeyd over a socketpair,
// as OpenSession would.
func newFakeSession(t *testing.T) (*sessionConn, *fakeKeyd) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "fake-keyd")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKeyd{conn: nc, calls: make(chan *godbus.Message, 64)}
	t.Cleanup(func() { nc.Close() })
	r := bufio.NewReader(k)
	go func() {
		defer close(k.calls)
		for _, want := range []string{"\x00AUTH EXTERNAL ", "BEGIN"} {
			line, err := r.ReadString('\n')
			if err != nil || !bytes.HasPrefix([]byte(line), []byte(want)) {
				return
			}
			if want != "BEGIN" {
				nc.Write([]byte("OK 0123456789abcdef0123456789abcdef\r\n"))
			}
		}
		for {
			msg, err := godbus.DecodeMessage(r)
			if err != nil {
				return
			}
			k.calls <- msg
		}
	}()
	s, err := dialSession(os.NewFile(uintptr(fds[1]), "session"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, k
}

func (k *fakeKeyd) next(t *testing.T) *godbus.Message {
	t.Helper()
	select {
	case m, ok := <-k.calls:
		if !ok {
			t.Fatal("the session closed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no call came")
		return nil
	}
}

func (k *fakeKeyd) answer(t *testing.T, call *godbus.Message, body ...any) {
	t.Helper()
	if _, err := k.conn.Write(replyMsg(t, godbus.TypeMethodReply, call.Serial(), "", body...)); err != nil {
		t.Fatal(err)
	}
}

func signDerived(ctx context.Context, s *sessionConn, data string) ([]byte, error) {
	return (&Session{pc: s}).SignDerived(ctx, "k-1", []byte("module/m"), []byte(data))
}

func TestSessionCallsOfManyGoroutinesGetTheirOwnReplies(t *testing.T) {
	s, k := newFakeSession(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprintf("data %d", i)
			got, err := signDerived(context.Background(), s, want)
			if err == nil && string(got) != "sig of "+want {
				err = fmt.Errorf("caller %d got %q", i, got)
			}
			errs <- err
		}()
	}
	// Answer all n calls in the reverse order they came in.
	var calls []*godbus.Message
	for range n {
		calls = append(calls, k.next(t))
	}
	for i := n - 1; i >= 0; i-- {
		c := calls[i]
		if c.Headers[godbus.FieldPath].Value() != godbus.ObjectPath("/org/edgev2/Keys1/keys/k_2d1") ||
			c.Headers[godbus.FieldMember].Value() != api.MethodSignDerived || c.Body[1] != api.MechHMACSHA256 {
			t.Fatalf("call %v", c)
		}
		k.answer(t, c, append([]byte("sig of "), c.Body[2].([]byte)...))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if !s.alive() {
		t.Error("the session ended")
	}
}

func TestSessionErrorRepliesArriveAsFaultKinds(t *testing.T) {
	s, k := newFakeSession(t)
	for _, tc := range []struct {
		name string
		kind fault.Kind
	}{
		{"org.edgev2.Error.NotAuthorized", fault.NotAuthorized},
		{"org.freedesktop.DBus.Error.UnknownObject", fault.NotFound},
		{"org.edgev2.Error.InvalidArgs", fault.InvalidArgs},
		{"org.edgev2.Error.Failed", fault.Failed},
	} {
		done := make(chan error, 1)
		go func() { _, err := signDerived(context.Background(), s, "x"); done <- err }()
		c := k.next(t)
		k.conn.Write(replyMsg(t, godbus.TypeError, c.Serial(), tc.name, "refused: "+tc.name))
		err := <-done
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != tc.kind || fe.Msg != "refused: "+tc.name {
			t.Errorf("%s: got %#v, want a fault of kind %v with keyd's message", tc.name, err, tc.kind)
		}
	}
	if !s.alive() {
		t.Error("an error reply ended the session")
	}
}

func TestSessionEndsOnAGarbledOrOversizedReply(t *testing.T) {
	huge := []byte{'l', 2, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(huge[4:], 0xfffffff0)
	for _, tc := range []struct {
		name  string
		reply func(call *godbus.Message) []byte
	}{
		{"not D-Bus", func(*godbus.Message) []byte { return []byte("HTTP/1.1 200 OK\r\n\r\nhello there, hello") }},
		{"a length of 4 GiB", func(*godbus.Message) []byte { return huge }},
		{"a byte array longer than its body", func(c *godbus.Message) []byte {
			b := replyMsg(t, godbus.TypeMethodReply, c.Serial(), "", []byte{1, 2, 3})
			b[len(b)-7] = 200
			return b
		}},
		{"a file descriptor", func(c *godbus.Message) []byte {
			msg := &godbus.Message{Type: godbus.TypeMethodReply, Headers: map[godbus.HeaderField]godbus.Variant{
				godbus.FieldReplySerial: godbus.MakeVariant(c.Serial()), godbus.FieldUnixFDs: godbus.MakeVariant(uint32(1))}}
			var buf bytes.Buffer
			msg.EncodeTo(&buf, binary.LittleEndian)
			return buf.Bytes()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, k := newFakeSession(t)
			done := make(chan error, 2)
			for range 2 { // the caller reading and one waiting both learn of it
				go func() { _, err := signDerived(context.Background(), s, "x"); done <- err }()
			}
			c := k.next(t)
			k.next(t)
			k.conn.Write(tc.reply(c))
			for range 2 {
				if err := <-done; !fault.Is(err, fault.Unavailable) {
					t.Errorf("got %v, want fault.Unavailable (the session ended)", err)
				}
			}
			if s.alive() {
				t.Error("the session lives on after a reply it cannot read")
			}
			if _, err := signDerived(context.Background(), s, "y"); !fault.Is(err, fault.Unavailable) {
				t.Errorf("a call on the ended session: %v, want fault.Unavailable", err)
			}
		})
	}
}

func TestSessionOutlivesACallWhoseContextEnds(t *testing.T) {
	s, k := newFakeSession(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := signDerived(ctx, s, "late")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
	late := k.next(t)
	done := make(chan []byte, 1)
	go func() {
		sig, err := signDerived(context.Background(), s, "now")
		if err != nil {
			t.Error(err)
		}
		done <- sig
	}()
	now := k.next(t)
	k.answer(t, late, []byte("the reply nobody waits for"))
	k.answer(t, now, []byte("sig now"))
	if got := <-done; string(got) != "sig now" {
		t.Errorf("got %q, want the reply to the second call", got)
	}
	if !s.alive() {
		t.Error("the session ended")
	}
}

func TestSessionCallOnAClosedSessionFails(t *testing.T) {
	s, _ := newFakeSession(t)
	s.Close()
	if _, err := signDerived(context.Background(), s, "x"); !fault.Is(err, fault.Unavailable) {
		t.Errorf("got %v, want fault.Unavailable", err)
	}
}

func TestSessionEndsWhenKeydCloses(t *testing.T) {
	s, k := newFakeSession(t)
	done := make(chan error, 1)
	go func() { _, err := signDerived(context.Background(), s, "x"); done <- err }()
	k.next(t)
	k.conn.Close()
	if err := <-done; !fault.Is(err, fault.Unavailable) {
		t.Errorf("got %v, want fault.Unavailable", err)
	}
	if s.alive() {
		t.Error("alive after keyd closed its end")
	}
}

func TestSessionCallersThatGiveUpDoNotStallTheOthers(t *testing.T) {
	s, k := newFakeSession(t)
	go func() { // answer in batches, newest first, so replies overtake each other
		var batch []*godbus.Message
		flush := func() {
			for i := len(batch) - 1; i >= 0; i-- {
				c := batch[i]
				k.conn.Write(replyMsg(t, godbus.TypeMethodReply, c.Serial(), "", append([]byte("sig of "), c.Body[2].([]byte)...)))
			}
			batch = batch[:0]
		}
		for {
			select {
			case c, ok := <-k.calls:
				if !ok {
					return
				}
				batch = append(batch, c)
				if len(batch) == 3 {
					flush()
				}
			case <-time.After(2 * time.Millisecond):
				flush()
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				ctx, cancel := context.WithCancel(context.Background())
				if g%3 == 0 { // a third of the callers give up at once
					cancel()
				}
				want := fmt.Sprintf("%d/%d", g, i)
				got, err := signDerived(ctx, s, want)
				cancel()
				switch {
				case g%3 == 0 && errors.Is(err, context.Canceled):
				case err != nil:
					t.Errorf("caller %s: %v", want, err)
					return
				case string(got) != "sig of "+want:
					t.Errorf("caller %s got %q", want, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !s.alive() {
		t.Error("the session ended")
	}
}
