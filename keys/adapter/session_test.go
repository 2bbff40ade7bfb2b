package adapter_test

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/keys"
	"github.com/edgev2/edgev2/keys/adapter"
	"github.com/edgev2/edgev2/keys/api"
	"github.com/edgev2/edgev2/keys/client"
)

// inprocKeyd serves the Keys API from the test process (file engine), on a
// connection of the service user, so tests can read its session and fast
// path counters; the bus, polkitd and callers of other uids are real.
type inprocKeyd struct {
	bus    *testenv.Bus
	polkit *testenv.Polkit
	api    *adapter.BusAPI
	fast   *adapter.FastPath
	root   *client.Client
}

func startInprocKeyd(t *testing.T) *inprocKeyd {
	t.Helper()
	testenv.RequireRoot(t)
	k := &inprocKeyd{bus: testenv.StartBus(t)}
	k.polkit = testenv.StartPolkit(t, k.bus)
	k.fast = adapter.NewFastPath()
	conn := k.bus.ConnAsWith(t, testenv.ServiceUser, k.fast.Option())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	auth, err := bus.NewAuthorizer(ctx, conn, log)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := keys.OpenFileEngine(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := keys.NewService(engine, nil, log)
	srv := bus.NewServer(conn, api.ObjectPath, log)
	k.api = adapter.New(ctx, svc, auth, srv, log)
	k.fast.Attach(k.api)
	if err := srv.Export(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Claim(api.BusName); err != nil {
		t.Fatal(err)
	}
	k.root = client.New(k.bus.Conn(t))
	return k
}

// grant lets OtherUser open sessions (if session) and use exactly the keys ids.
func (k *inprocKeyd) grant(t *testing.T, name string, session bool, ids ...string) {
	t.Helper()
	k.polkit.AddRule(t, name, fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (subject.user != %q) return polkit.Result.NOT_HANDLED;
  if (action.id == "org.edgev2.keys.session" && %t) return polkit.Result.YES;
  var ids = %s;
  if (action.id == "org.edgev2.keys.use" && ids.indexOf(action.lookup("key_id")) >= 0) return polkit.Result.YES;
  return polkit.Result.NOT_HANDLED;
});`, testenv.OtherUser, session, jsArray(ids)))
}

func jsArray(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return "[" + strings.Join(q, ",") + "]"
}

func (k *inprocKeyd) createKeys(t *testing.T, ids ...string) {
	t.Helper()
	k.createKeysFor(t, "sign", ids...)
}

// createKeysFor creates a symmetric key for usage under each of ids.
func (k *inprocKeyd) createKeysFor(t *testing.T, usage string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := k.root.CreateKey(ctxT(t), id, usage, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// openOthersSession opens a session as testenv.OtherUser and returns its
// socket.
func (k *inprocKeyd) openOthersSession(t *testing.T) net.Conn {
	t.Helper()
	sc, err := openRawSession(t, k.bus.ConnAs(t, testenv.OtherUser))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// openRawSession asks for a session on conn and returns the socket.
func openRawSession(t *testing.T, conn *godbus.Conn) (net.Conn, error) {
	t.Helper()
	return openSessionSocket(t, conn, map[string]godbus.Variant{})
}

// openSessionSocket asks for a session with opts on conn and returns the
// socket, closed when the test ends.
func openSessionSocket(t *testing.T, conn *godbus.Conn, opts map[string]godbus.Variant) (net.Conn, error) {
	t.Helper()
	var fd godbus.UnixFD
	if err := conn.Object(api.BusName, api.ObjectPath).Call(api.Interface+".OpenSession", 0, opts).Store(&fd); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "session")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// peer speaks the D-Bus peer protocol on a session socket.
func peer(t *testing.T, c net.Conn) *godbus.Conn {
	t.Helper()
	pc, err := godbus.NewConn(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Auth([]godbus.Auth{godbus.AuthExternal("0")}); err != nil {
		t.Fatalf("session handshake: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func signOn(pc *godbus.Conn, id string) error {
	var sig []byte
	return pc.Object("", bus.ChildPath(api.ObjectPath, "keys", id)).Call(api.KeyInterface+".Sign", 0,
		"hmac-sha256", []byte("data"), map[string]godbus.Variant{}).Store(&sig)
}

// createECSigner creates the P-256 key pair id through c and returns it
// with its signer.
func createECSigner(t *testing.T, c *client.Client, id string) (*client.Key, crypto.Signer) {
	t.Helper()
	ctx := ctxT(t)
	key, err := c.CreateKeyPair(ctx, id, "ec-p256")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := key.Signer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return key, signer
}

// signOnSession signs SHA-256(data) with the ECDSA signer of c's key and
// fails unless c signed through its session and the signature verifies.
func signOnSession(t *testing.T, c *client.Client, signer crypto.Signer, data string) (digest, sig []byte) {
	t.Helper()
	sum := sha256.Sum256([]byte(data))
	sig, err := signer.Sign(nil, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign through the session: %v", err)
	}
	if !c.UsingSession() {
		t.Fatalf("the client signed without a session: %v", c.SessionError())
	}
	if !ecdsa.VerifyASN1(signer.Public().(*ecdsa.PublicKey), sum[:], sig) {
		t.Fatal("the session's ECDSA signature does not verify")
	}
	return sum[:], sig
}

func TestSessionSignsVerifiesAndEncryptsLikeTheBus(t *testing.T) {
	k := startInprocKeyd(t)
	ctx := ctxT(t)
	c := k.root.WithSession()
	t.Cleanup(func() { c.Close() })
	key, signer := createECSigner(t, c, "ec")
	digest, sig := signOnSession(t, c, signer, "session data")
	if ok, err := key.Verify(ctx, "ecdsa", digest[:], sig); err != nil || !ok {
		t.Fatalf("Verify through the session = %v, %v", ok, err)
	}
	enc, err := c.CreateKey(ctx, "aes", "encrypt", nil)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := enc.Encrypt(ctx, "aes-256-gcm", []byte("secret"), nil, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := enc.Decrypt(ctx, "aes-256-gcm", ct, nil, []byte("aad"))
	if err != nil || string(pt) != "secret" {
		t.Fatalf("Decrypt through the session = %q, %v", pt, err)
	}
	if _, err := enc.Decrypt(ctx, "aes-256-gcm", ct, nil, []byte("other aad")); !fault.Is(err, fault.InvalidArgs) {
		t.Fatalf("tampered Decrypt through the session: %v; want InvalidArgs", err)
	}
	master, err := c.CreateKey(ctx, "master", "derive", nil)
	if err != nil {
		t.Fatal(err)
	}
	viaSession, err := master.SignDerived(ctx, []byte("module-a"), []byte("token"))
	if err != nil {
		t.Fatal(err)
	}
	viaBus, err := k.root.Key("master").SignDerived(ctx, []byte("module-a"), []byte("token"))
	if err != nil || string(viaBus) != string(viaSession) {
		t.Fatalf("SignDerived differs between bus and session: %x vs %x (%v)", viaBus, viaSession, err)
	}
	if _, err := c.Key("missing").Sign(ctx, "hmac-sha256", []byte("x")); err == nil || !strings.Contains(err.Error(), "no object") {
		t.Fatalf("Sign on a missing key through the session: %v; want UnknownObject", err)
	}
}

func dbusName(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestKeydBusFastPathServesKeyCalls(t *testing.T) {
	k := startInprocKeyd(t)
	ctx := ctxT(t)
	k.createKeys(t, "hot")
	before := k.fast.Served()
	if _, err := k.root.Key("hot").Sign(ctx, "hmac-sha256", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if k.fast.Served() != before+1 {
		t.Fatalf("the fast path served %d calls, want %d: godbus dispatched Sign by reflection", k.fast.Served(), before+1)
	}
	conn := k.bus.Conn(t)
	err := conn.Object(api.BusName, bus.ChildPath(api.ObjectPath, "keys", "hot")).Call(api.KeyInterface+".Sign", 0, "hmac-sha256").Err
	if name := dbusErrorName(err); name != "org.freedesktop.DBus.Error.InvalidArgs" {
		t.Fatalf("Sign with a wrong signature over the bus: %v (%s); want InvalidArgs", err, name)
	}
	err = conn.Object(api.BusName, bus.ChildPath(api.ObjectPath, "keys", "hot")).Call(api.KeyInterface+".Sign", 0,
		"hmac-sha256", []byte("x"), map[string]godbus.Variant{"bogus": godbus.MakeVariant("y")}).Err
	if name := dbusErrorName(err); name != bus.ErrInvalidArgs {
		t.Fatalf("Sign with an unknown option over the bus: %v; want %s", err, bus.ErrInvalidArgs)
	}
}

func TestSessionRefusedWithoutTheSessionAction(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "granted")
	k.grant(t, "use-only", false, "granted")
	other := k.bus.ConnAs(t, testenv.OtherUser)
	if _, err := openRawSession(t, other); dbusErrorName(err) != bus.ErrNotAuthorized {
		t.Fatalf("OpenSession without org.edgev2.keys.session: %v; want %s", err, bus.ErrNotAuthorized)
	}
	// The client falls back to the bus, where the key grant still applies.
	c := client.New(other).WithSession()
	if _, err := c.Key("granted").Sign(ctxT(t), "hmac-sha256", []byte("x")); err != nil {
		t.Fatalf("Sign after a refused session: %v; want the bus to serve it", err)
	}
	if c.UsingSession() || !fault.Is(c.SessionError(), fault.NotAuthorized) {
		t.Fatalf("UsingSession=%v SessionError=%v; want a refused session", c.UsingSession(), c.SessionError())
	}
}

func TestSessionUsesOnlyTheOpenersKeysCachedPerSession(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "granted", "other")
	k.grant(t, "session", true, "granted")
	sc := k.openOthersSession(t)
	// This (root) test process holds the session: it acts as the opener,
	// no more.
	pc := peer(t, sc)
	for range 2 { // the second answer comes from the session's cache
		if err := signOn(pc, "granted"); err != nil {
			t.Fatalf("Sign on the granted key through the session: %v", err)
		}
		if err := signOn(pc, "other"); dbusErrorName(err) != bus.ErrNotAuthorized {
			t.Fatalf("Sign on a key the opener is not granted: %v; want NotAuthorized", err)
		}
	}
	// Another opener's decisions are its own.
	rc, err := openRawSession(t, k.bus.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := signOn(peer(t, rc), "other"); err != nil {
		t.Fatalf("root's session on the key denied to the other session: %v", err)
	}
	if err := signOn(pc, "other"); dbusErrorName(err) != bus.ErrNotAuthorized {
		t.Fatalf("after root used it, the other session: %v; want NotAuthorized still", err)
	}
}

func TestSessionRevokedWhenPolkitRulesChange(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "granted")
	k.grant(t, "session", true)
	sc := k.openOthersSession(t)
	pc := peer(t, sc)
	t.Run("granted", func(t *testing.T) {
		k.grant(t, "key", false, "granted") // removed when this subtest ends
		if err := signOn(pc, "granted"); err != nil {
			t.Fatalf("Sign while granted: %v", err)
		}
	})
	// polkitd reloaded without the key rule and said Changed: the cached
	// grant must go. keyd hears Changed asynchronously; wait for it.
	testenv.Eventually(t, time.Minute, func() bool {
		err := signOn(pc, "granted")
		if err != nil && dbusErrorName(err) != bus.ErrNotAuthorized {
			t.Fatalf("Sign after revocation: %v; want NotAuthorized", err)
		}
		return err != nil
	}, "the session still signs after its rule was removed")
}

// sessionHelperProcess is the other process a session's fd is passed to
// (TestSessionFdPassedToAnotherProcessActsAsOpener); TestMain runs it in
// place of the tests when EDGEV2_SESSION_HELPER=1.
func sessionHelperProcess() {
	f := os.NewFile(3, "session")
	c, err := net.FileConn(f)
	if err != nil {
		fmt.Println("fileconn:", err)
		os.Exit(2)
	}
	pc, err := godbus.NewConn(c)
	if err == nil {
		err = pc.Auth([]godbus.Auth{godbus.AuthExternal(fmt.Sprint(os.Geteuid()))})
	}
	if err != nil {
		fmt.Println("auth:", err)
		os.Exit(2)
	}
	for _, id := range strings.Split(os.Getenv("EDGEV2_SESSION_KEYS"), ",") {
		name := ""
		if err := signOn(pc, id); err != nil {
			name = dbusErrorName(err)
		}
		fmt.Printf("%s=%s\n", id, name)
	}
	os.Exit(0)
}

func TestSessionFdPassedToAnotherProcessActsAsOpener(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "granted", "other")
	k.grant(t, "session", true, "granted")
	sc := k.openOthersSession(t)
	f, err := sc.(*net.UnixConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The helper runs as root: holding the session, it is still only the opener.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "EDGEV2_SESSION_HELPER=1", "EDGEV2_SESSION_KEYS=granted,other")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "granted=\n") {
		t.Fatalf("the helper could not use the opener's key:\n%s", out)
	}
	if !strings.Contains(string(out), "other="+bus.ErrNotAuthorized) {
		t.Fatalf("the helper (root) used a key its session's opener is not granted:\n%s", out)
	}
}

// rawSession is a session socket after the SASL exchange, for writing
// messages godbus would refuse to send.
func rawSession(t *testing.T, k *inprocKeyd) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := openRawSession(t, k.bus.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	c.Write([]byte("\x00AUTH EXTERNAL 30\r\n"))
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("AUTH EXTERNAL: %q", line)
	}
	c.Write([]byte("BEGIN\r\n"))
	return c, r
}

// readReply reads one message from a raw session.
func readReply(t *testing.T, r *bufio.Reader) *godbus.Message {
	t.Helper()
	m, err := godbus.DecodeMessage(r)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return m
}

func replyErrorName(m *godbus.Message) string {
	if m.Type != godbus.TypeError {
		return "(not an error)"
	}
	n, _ := m.Headers[godbus.FieldErrorName].Value().(string)
	return n
}

func TestSessionMalformedMessagesGetNamedErrors(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "k")
	rc, err := openRawSession(t, k.bus.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	pc := peer(t, rc)
	keyPath := bus.ChildPath(api.ObjectPath, "keys", "k")
	tests := []struct {
		name   string
		path   godbus.ObjectPath
		method string
		args   []any
		want   string
	}{
		{"wrong signature", keyPath, api.KeyInterface + ".Sign", []any{"hmac-sha256"}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"wrong types", keyPath, api.KeyInterface + ".Sign", []any{[]byte("x"), "hmac-sha256", map[string]godbus.Variant{}}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"unknown method", keyPath, api.KeyInterface + ".Explode", nil, "org.freedesktop.DBus.Error.UnknownMethod"},
		{"unknown interface", keyPath, "org.edgev2.Keys1.CreateKey", []any{"x", map[string]godbus.Variant{}}, "org.freedesktop.DBus.Error.UnknownInterface"},
		{"unknown path", "/org/edgev2/Keys1/keys/a/b", api.KeyInterface + ".Sign", []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{}}, "org.freedesktop.DBus.Error.UnknownObject"},
		{"missing key", bus.ChildPath(api.ObjectPath, "keys", "nope"), api.KeyInterface + ".Sign", []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{}}, "org.freedesktop.DBus.Error.UnknownObject"},
		{"bad path escape", "/org/edgev2/Keys1/keys/_zz", api.KeyInterface + ".Sign", []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{}}, "org.freedesktop.DBus.Error.UnknownObject"},
		{"unknown option", keyPath, api.KeyInterface + ".Sign", []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{"z": godbus.MakeVariant(1)}}, bus.ErrInvalidArgs},
		{"data over the limit", keyPath, api.KeyInterface + ".Sign", []any{"hmac-sha256", make([]byte, keys.MaxData+1), map[string]godbus.Variant{}}, bus.ErrInvalidArgs},
		{"bad mechanism", keyPath, api.KeyInterface + ".Sign", []any{"rot13", []byte("x"), map[string]godbus.Variant{}}, bus.ErrInvalidArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pc.Object("", tt.path).Call(tt.method, 0, tt.args...).Err
			if got := dbusErrorName(err); got != tt.want {
				t.Fatalf("got %v (%s); want %s", err, got, tt.want)
			}
		})
	}
	if err := pc.Object("", "/").Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
		t.Fatalf("Ping on the session: %v", err)
	}

	t.Run("undecodable header", func(t *testing.T) {
		c, r := rawSession(t, k)
		// A method call whose header array holds a field code 0 with a
		// truncated variant: a valid frame, an invalid message.
		msg := []byte{'l', 1, 0, 1, 0, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 0, 1, 'u', 0, 1, 0, 0, 0}
		c.Write(msg)
		m := readReply(t, r)
		if replyErrorName(m) != "org.freedesktop.DBus.Error.InvalidArgs" {
			t.Fatalf("reply to a malformed message: %v", m)
		}
		// The session survives a malformed message.
		if err := signOnRaw(rawPeer{c: c, r: r}, "k"); err != nil {
			t.Fatalf("Sign after a malformed message: %v", err)
		}
	})
	t.Run("huge body", func(t *testing.T) {
		c, r := rawSession(t, k)
		hdr := make([]byte, 16)
		hdr[0], hdr[1], hdr[3] = 'l', 1, 1
		binary.LittleEndian.PutUint32(hdr[4:], 120<<20) // 120 MiB body announced
		binary.LittleEndian.PutUint32(hdr[8:], 9)
		c.Write(hdr)
		m := readReply(t, r)
		if replyErrorName(m) != bus.ErrInvalidArgs {
			t.Fatalf("reply to a 120 MiB message: %v", m)
		}
		// keyd then ends that session, and still serves others.
		if _, err := r.ReadByte(); err == nil {
			t.Fatal("the session stayed open after a message over the limit")
		}
		if err := signOn(pc, "k"); err != nil {
			t.Fatalf("another session after a huge message: %v", err)
		}
	})
}

// rawPeer is a session after the handshake, without godbus's connection.
type rawPeer struct {
	c net.Conn
	r *bufio.Reader
}

// signOnRaw writes one Sign call by hand and reads its reply.
func signOnRaw(p rawPeer, id string) error {
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(bus.ChildPath(api.ObjectPath, "keys", id)),
		godbus.FieldInterface: godbus.MakeVariant(api.KeyInterface),
		godbus.FieldMember:    godbus.MakeVariant("Sign"),
	}, Body: []any{"hmac-sha256", []byte("x"), map[string]godbus.Variant{}}}
	msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(msg.Body...))
	if err := msg.EncodeTo(p.c, binary.LittleEndian); err != nil {
		return err
	}
	m, err := godbus.DecodeMessage(p.r)
	if err != nil {
		return err
	}
	if m.Type == godbus.TypeError {
		return fmt.Errorf("%s: %v", replyErrorName(m), m.Body)
	}
	return nil
}

func TestSessionCloseEndsKeydGoroutines(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "k")
	var clients []*client.Client
	for range 5 {
		c := k.root.WithSession()
		if _, err := c.Key("k").Sign(ctxT(t), "hmac-sha256", []byte("x")); err != nil || !c.UsingSession() {
			t.Fatalf("Sign: %v (session: %v)", err, c.SessionError())
		}
		clients = append(clients, c)
	}
	if n := k.api.SessionGoroutines(); n < 5 {
		t.Fatalf("%d session goroutines with 5 sessions open", n)
	}
	for _, c := range clients {
		c.Close()
	}
	if !testenv.WaitFor(time.Minute, func() bool { return k.api.SessionGoroutines() == 0 }) {
		t.Fatalf("%d session goroutines still run after every session was closed", k.api.SessionGoroutines())
	}
}

func TestSessionLimitPerCaller(t *testing.T) {
	k := startInprocKeyd(t)
	k.grant(t, "session", true)
	other := k.bus.ConnAs(t, testenv.OtherUser)
	var open []net.Conn
	for i := 0; ; i++ {
		c, err := openRawSession(t, other)
		if err != nil {
			if dbusErrorName(err) != api.ErrLimitsExceeded {
				t.Fatalf("OpenSession #%d: %v; want %s", i+1, err, api.ErrLimitsExceeded)
			}
			if i != 16 {
				t.Fatalf("the limit came after %d sessions; want 16", i)
			}
			break
		}
		if i > 64 {
			t.Fatal("no limit on sessions per caller")
		}
		open = append(open, c)
	}
	// root is another caller: not limited by the other uid's sessions.
	if _, err := openRawSession(t, k.bus.Conn(t)); err != nil {
		t.Fatalf("root's session while another uid is at its limit: %v", err)
	}
	// Closing one frees its slot (once keyd has noticed).
	open[0].Close()
	testenv.EventuallyNoError(t, time.Minute, func() error {
		_, err := openRawSession(t, other)
		if err != nil && dbusErrorName(err) != api.ErrLimitsExceeded {
			t.Fatalf("OpenSession after closing one: %v", err)
		}
		return err
	}, "OpenSession after closing one")
}

func TestSessionClosedWhenTheSessionGrantIsRevoked(t *testing.T) {
	k := startInprocKeyd(t)
	k.createKeys(t, "granted")
	k.grant(t, "key", false, "granted")
	var sc net.Conn
	t.Run("granted", func(t *testing.T) {
		k.grant(t, "session", true) // removed when this subtest ends
		var fd godbus.UnixFD
		if err := k.bus.ConnAs(t, testenv.OtherUser).Object(api.BusName, api.ObjectPath).Call(api.Interface+".OpenSession", 0,
			map[string]godbus.Variant{}).Store(&fd); err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "session")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		sc = c
	})
	defer sc.Close()
	pc := peer(t, sc)
	testenv.Eventually(t, time.Minute, func() bool {
		err := signOn(pc, "granted")
		if name := dbusErrorName(err); err != nil && name != bus.ErrNotAuthorized && !strings.Contains(err.Error(), "closed") {
			t.Fatalf("Sign after the session grant went: %v; want NotAuthorized or a closed session", err)
		}
		return err != nil
	}, "the session still signs after its opener lost org.edgev2.keys.session")
	// keyd closed its end: the session is over, not merely refusing.
	if err := signOn(pc, "granted"); err == nil || dbusErrorName(err) == bus.ErrNotAuthorized && pc.Connected() {
		testenv.Eventually(t, time.Minute, func() bool { return !pc.Connected() },
			"keyd kept the session open after its opener lost the session grant")
	}
}

func TestKeydSessionSignsOnSoftHSMAndReopensAfterRestart(t *testing.T) {
	k := startKeyd(t, "pkcs11", "")
	c := k.keys.WithSession()
	defer c.Close()
	_, signer := createECSigner(t, c, "session-ec")
	signOnSession(t, c, signer, "token")
	k.svc.Restart(t) // the session dies with keyd
	signOnSession(t, c, signer, "token")
}
