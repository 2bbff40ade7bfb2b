package adapter_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/adapter"
	"github.com/edgev2/edgev2/keys/api"
)

// A peer that pipelines calls and never reads the replies must not hold
// keyd's session goroutines (the reader, its calls in flight, shared pool
// workers among them) for as long as it keeps the socket open: keyd closes
// the session once a reply cannot be written in time.
func TestSessionPeerThatNeverReadsIsClosed(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "k")
	restore := adapter.SetSessionWriteTimeout(300 * time.Millisecond)
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
	if !testenv.WaitFor(time.Minute, func() bool { return k.api.SessionGoroutines() == 0 }) {
		t.Fatalf("%d session goroutines still held by a peer that never reads", k.api.SessionGoroutines())
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

// sessionOpenerHelperProcess opens a session as its own (non-root)
// process, hands the descriptor to fd 3 (a unix socket) and exits; TestMain
// runs it in place of the tests when EDGEV2_SESSION_OPENER=1.
func sessionOpenerHelperProcess() {
	conn, err := godbus.Connect(os.Getenv("EDGEV2_BUS"))
	if err != nil {
		fmt.Println("connect:", err)
		os.Exit(2)
	}
	var fd godbus.UnixFD
	if err := conn.Object(api.BusName, api.ObjectPath).Call(api.Interface+".OpenSession", 0, map[string]godbus.Variant{}).Store(&fd); err != nil {
		fmt.Println("OpenSession:", err)
		os.Exit(2)
	}
	back, err := net.FileConn(os.NewFile(3, "back"))
	if err != nil {
		fmt.Println("back:", err)
		os.Exit(2)
	}
	if _, _, err := back.(*net.UnixConn).WriteMsgUnix([]byte{1}, syscall.UnixRights(int(fd)), nil); err != nil {
		fmt.Println("send fd:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// docs/keys.md: "If the opener exits, keys not yet checked on the session
// are refused (polkit cannot check a gone process)".
func TestSessionKeysNotYetCheckedRefusedAfterTheOpenerExits(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "granted")
	k.grant(t, "session", true, "granted")
	u, err := user.Lookup(testenv.OtherUser)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	// The test binary, where the other user can run it.
	bin, err := os.MkdirTemp("", "opener-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	os.Chmod(bin, 0o755)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+"/keys.test", self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin + "/keys.test")
	cmd.Dir = bin
	cmd.Env = append(os.Environ(), "EDGEV2_SESSION_OPENER=1", "EDGEV2_BUS="+k.bus.Address)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	theirs.Close()
	if err != nil {
		t.Fatalf("opener: %v\n%s", err, out)
	}
	mc, err := net.FileConn(mine)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	oob := make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := mc.(*net.UnixConn).ReadMsgUnix(make([]byte, 1), oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("no fd from the opener: %v", err)
	}
	rights, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) != 1 {
		t.Fatalf("no fd from the opener: %v", err)
	}
	sf := os.NewFile(uintptr(rights[0]), "session")
	sc, err := net.FileConn(sf)
	sf.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	// The opener has exited (cmd waited for it); "granted" was never checked.
	if err := signOn(peer(t, sc), "granted"); dbusErrorName(err) != bus.ErrNotAuthorized {
		t.Fatalf("Sign on a gone opener's session, key not checked before: %v; want %s", err, bus.ErrNotAuthorized)
	}
}

// The bus (fast path) and a session run the same checks: for the same
// caller and the same bad call, the same error name.
func TestSessionAndFastPathRefuseBadCallsAlike(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "k", "secret")
	k.grant(t, "session", true, "k")
	other := k.bus.ConnAs(t, testenv.OtherUser)
	sc, err := openRawSession(t, other)
	if err != nil {
		t.Fatal(err)
	}
	pc := peer(t, sc)
	key := func(id string) godbus.ObjectPath { return bus.ChildPath(api.ObjectPath, "keys", id) }
	none := map[string]godbus.Variant{}
	tests := []struct {
		name   string
		path   godbus.ObjectPath
		method string
		args   []any
	}{
		{"empty data", key("k"), "Sign", []any{"hmac-sha256", []byte{}, none}},
		{"oversized data", key("k"), "Sign", []any{"hmac-sha256", make([]byte, keys.MaxData+1), none}},
		{"unknown mechanism", key("k"), "Sign", []any{"rot13", []byte("x"), none}},
		{"unknown mechanism, not granted", key("secret"), "Sign", []any{"rot13", []byte("x"), none}},
		{"wrong signature", key("k"), "Sign", []any{"hmac-sha256"}},
		{"unknown option", key("k"), "Sign", []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{"z": godbus.MakeVariant(1)}}},
		{"not granted", key("secret"), "Sign", []any{"hmac-sha256", []byte("x"), none}},
		{"missing key", key("nope"), "Sign", []any{"hmac-sha256", []byte("x"), none}},
		{"export not granted", key("k"), "ExportDerived", []any{[]byte("d")}},
		{"bad path", "/org/edgev2/Keys1/keys/_zz", "Sign", []any{"hmac-sha256", []byte("x"), none}},
		{"nested path", key("k") + "/x", "Sign", []any{"hmac-sha256", []byte("x"), none}},
		{"verify empty signature", key("k"), "Verify", []any{"hmac-sha256", []byte("x"), []byte{}, none}},
		{"decrypt unknown option type", key("k"), "Decrypt", []any{"aes-256-gcm", []byte("x"), map[string]godbus.Variant{"iv": godbus.MakeVariant("s")}}},
	}
	before := k.fast.Served()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			onBus := other.Object(api.BusName, tt.path).Call(api.KeyInterface+"."+tt.method, 0, tt.args...).Err
			onSession := pc.Object("", tt.path).Call(api.KeyInterface+"."+tt.method, 0, tt.args...).Err
			if dbusErrorName(onBus) != dbusErrorName(onSession) {
				t.Fatalf("bus: %v (%s); session: %v (%s)", onBus, dbusErrorName(onBus), onSession, dbusErrorName(onSession))
			}
		})
	}
	if k.fast.Served() == before {
		t.Fatal("the fast path served none of the bus calls")
	}
}
