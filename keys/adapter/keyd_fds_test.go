package adapter_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/api"
)

// TestKeydClosesDescriptorsACallerAttaches: no keyd method takes a file
// descriptor, yet a bus caller may attach them to any call — as an extra
// argument, or inside a variant of the options — and the bus passes them
// on. An unprivileged caller's refused calls, on the fast path, through
// godbus's method tables and on OpenSession, must not leave them open in
// keyd: each would be a descriptor keyd holds until it runs out of them.
func TestKeydClosesDescriptorsACallerAttaches(t *testing.T) {
	k := startKeyd(t, "file", "")
	ctx := ctxT(t)
	key, err := k.keys.CreateKey(ctx, "fds", "sign", nil)
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckAttachedFDsAreClosed(t, "keyd", k.svc.Pid(), k.bus.ConnAs(t, testenv.OtherUser), api.BusName, func(fd godbus.UnixFD) []testenv.FDCall {
		return []testenv.FDCall{
			{Path: key.Path, Method: api.KeyInterface + ".Sign", Args: []any{keys.MechHMACSHA256, []byte("x"), map[string]godbus.Variant{}, fd}},
			{Path: key.Path, Method: api.KeyInterface + ".Sign", Args: []any{keys.MechHMACSHA256, []byte("x"), map[string]godbus.Variant{"fd": godbus.MakeVariant(fd)}}},
			{Path: api.ObjectPath, Method: api.Interface + ".GetKey", Args: []any{"fds", fd}},
			{Path: api.ObjectPath, Method: api.Interface + ".OpenSession", Args: []any{map[string]godbus.Variant{}, fd}},
			{Path: api.ObjectPath, Method: "org.freedesktop.DBus.Peer.Ping", Args: []any{fd}},
		}
	})
}

// TestKeydClosesDescriptorsNoArgumentNames: a message may carry more
// descriptors than its body names (UNIX_FDS says 8, the body has no 'h'),
// and the bus passes them all on. godbus receives them and, naming none of
// them in the message, forgets them; keyd must not keep them either.
func TestKeydClosesDescriptorsNoArgumentNames(t *testing.T) {
	k := startKeyd(t, "file", "")
	c := rawBusConn(t, k.bus.Address)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	const perCall, rounds = 8, 20
	attached := make([]int, perCall)
	for i := range attached {
		attached[i] = int(r.Fd())
	}
	before := testenv.OpenFDs(t, k.svc.Pid())
	for range rounds {
		c.call(t, &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldDestination: godbus.MakeVariant(api.BusName),
			godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath(api.ObjectPath)),
			godbus.FieldInterface:   godbus.MakeVariant("org.freedesktop.DBus.Peer"),
			godbus.FieldMember:      godbus.MakeVariant("Ping"),
			godbus.FieldUnixFDs:     godbus.MakeVariant(uint32(perCall)),
		}}, attached)
	}
	after := testenv.OpenFDs(t, k.svc.Pid())
	t.Logf("keyd holds %d descriptors before, %d after %d pings carrying %d unnamed ones", before, after, rounds, perCall)
	if after-before > 8 {
		t.Fatalf("keyd holds %d descriptors after %d pings that each brought %d no argument names (%d before); they leak", after, rounds, perCall, before)
	}
}

// rawBus is a bus connection spoken by hand, to send what godbus would not.
type rawBus struct {
	conn   *net.UnixConn
	rd     *bufio.Reader
	serial uint32
}

func rawBusConn(t *testing.T, address string) *rawBus {
	t.Helper()
	path, ok := strings.CutPrefix(address, "unix:path=")
	if !ok {
		t.Fatalf("bus address %q is not unix:path=", address)
	}
	path, _, _ = strings.Cut(path, ",")
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	uc.SetDeadline(time.Now().Add(time.Minute))
	c := &rawBus{conn: uc, rd: bufio.NewReader(uc)}
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
	for _, step := range []struct{ send, want string }{
		{"\x00AUTH EXTERNAL " + uid + "\r\n", "OK "},
		{"NEGOTIATE_UNIX_FD\r\n", "AGREE_UNIX_FD"},
	} {
		if _, err := uc.Write([]byte(step.send)); err != nil {
			t.Fatal(err)
		}
		line, err := c.rd.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, step.want) {
			t.Fatalf("auth: %q, %v; want %s", line, err, step.want)
		}
	}
	if _, err := uc.Write([]byte("BEGIN\r\n")); err != nil {
		t.Fatal(err)
	}
	c.call(t, &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldDestination: godbus.MakeVariant("org.freedesktop.DBus"),
		godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/freedesktop/DBus")),
		godbus.FieldInterface:   godbus.MakeVariant("org.freedesktop.DBus"),
		godbus.FieldMember:      godbus.MakeVariant("Hello"),
	}}, nil)
	return c
}

// call sends msg with fds attached and waits for its reply (of any kind).
func (c *rawBus) call(t *testing.T, msg *godbus.Message, fds []int) *godbus.Message {
	t.Helper()
	c.serial++
	var b bytes.Buffer
	if err := msg.EncodeTo(&b, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b.Bytes()[8:], c.serial) // godbus leaves it 0
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := c.conn.WriteMsgUnix(b.Bytes(), oob, nil); err != nil {
		t.Fatal(err)
	}
	for {
		reply, err := godbus.DecodeMessage(c.rd)
		if err != nil {
			t.Fatalf("reading the reply: %v", err)
		}
		if rs, ok := reply.Headers[godbus.FieldReplySerial].Value().(uint32); ok && rs == c.serial {
			if reply.Type == godbus.TypeError {
				t.Logf("%s: %v", msg.Headers[godbus.FieldMember], reply.Body)
			}
			return reply
		}
	}
}
