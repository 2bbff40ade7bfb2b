package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

const keysName = "org.edgev2.Keys1"

// TestMain turns the test binary into a tiny bus client when
// EDGEV2_TESTENV_HELPER is set, so services can be started as other uids
// without a cmd/ package: it prints its unique name, requests the name in
// EDGEV2_TESTENV_NAME if any, and waits for SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("EDGEV2_TESTENV_HELPER") == "" {
		code := m.Run()
		os.RemoveAll(fmt.Sprintf("/tmp/edgev2-bin-%d", os.Getpid()))
		os.Exit(code)
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(2)
	}
	fmt.Printf("unique=%s\n", conn.Names()[0])
	if name := os.Getenv("EDGEV2_TESTENV_NAME"); name != "" {
		reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
		if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
			fmt.Fprintf(os.Stderr, "request %s: reply %v, %v\n", name, reply, err)
			os.Exit(3)
		}
	}
	<-terms
	os.Exit(0)
}

var (
	helperOnce sync.Once
	helperPath string
	helperErr  error
)

// helperBinary is a copy of this test binary that other uids can execute.
func helperBinary(t *testing.T) string {
	t.Helper()
	helperOnce.Do(func() {
		dir := fmt.Sprintf("/tmp/edgev2-bin-%d", os.Getpid())
		if helperErr = os.MkdirAll(dir, 0o755); helperErr != nil {
			return
		}
		var data []byte
		if data, helperErr = os.ReadFile(os.Args[0]); helperErr != nil {
			return
		}
		helperPath = filepath.Join(dir, "testenv-helper")
		helperErr = os.WriteFile(helperPath, data, 0o755)
	})
	if helperErr != nil {
		t.Fatalf("copy helper binary: %v", helperErr)
	}
	return helperPath
}

// helperEnv turns the helper on; under -race it also drops the race
// runtime's default 1 s sleep at exit, which every Stop would pay.
func helperEnv() []string {
	return []string{"EDGEV2_TESTENV_HELPER=1", "GORACE=atexit_sleep_ms=0"}
}

// startClientAs starts the helper as user, holding a bus connection, and
// returns its unique name.
func startClientAs(t *testing.T, bus *Bus, user string) string {
	t.Helper()
	svc := StartService(t, bus, ServiceOptions{
		Binary: helperBinary(t), User: user, Env: helperEnv(),
	})
	re := regexp.MustCompile(`unique=(\S+)`)
	var m []string
	Eventually(t, 10*time.Second, func() bool { m = re.FindStringSubmatch(svc.Output()); return m != nil },
		"helper as %s printed no unique name; output:\n%s", user, svc.Output())
	return m[1]
}

func connUID(t *testing.T, conn *dbus.Conn, name string) uint32 {
	t.Helper()
	var uid uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, name).Store(&uid); err != nil {
		t.Fatalf("GetConnectionUnixUser %s: %v", name, err)
	}
	return uid
}

func TestEnsureUserReturnsSameIDsEachTime(t *testing.T) {
	RequireRoot(t)
	var wg sync.WaitGroup
	ids := make([][2]int, 4)
	for i := range ids {
		wg.Go(func() {
			uid, gid := EnsureUser(t, OtherUser)
			ids[i] = [2]int{uid, gid}
		})
	}
	wg.Wait()
	for _, got := range ids[1:] {
		if got != ids[0] {
			t.Fatalf("EnsureUser(%s) returned %v then %v", OtherUser, ids[0], got)
		}
	}
	if ids[0][0] == 0 {
		t.Fatalf("%s has uid 0", OtherUser)
	}
}

func TestRunAsRunsWithThatUserAndNoSupplementaryGroups(t *testing.T) {
	RequireRoot(t)
	uid, gid := EnsureUser(t, OtherUser)
	out, errOut, code := RunAs(t, OtherUser, []string{"EDGEV2_X=1"}, "sh", "-c", `echo "$(id -u) $(id -G) $EDGEV2_X"`)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if want := fmt.Sprintf("%d %d 1", uid, gid); strings.TrimSpace(out) != want {
		t.Fatalf("got %q, want %q", strings.TrimSpace(out), want)
	}
	if _, _, code := RunAs(t, OtherUser, nil, "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
}

func TestBusDeniesRootOwningTheKeysName(t *testing.T) {
	bus := StartBus(t)
	conn := bus.Conn(t)
	_, err := conn.RequestName(keysName, dbus.NameFlagDoNotQueue)
	var dbusErr dbus.Error
	if !errors.As(err, &dbusErr) || dbusErr.Name != "org.freedesktop.DBus.Error.AccessDenied" {
		t.Fatalf("RequestName(%s) as root: got %v, want AccessDenied (only %s may own it)", keysName, err, ServiceUser)
	}
}

func TestBusDeniesMethodCallsNoPolicyAllows(t *testing.T) {
	RequireRoot(t)
	bus := StartBus(t)
	owner := startClientAs(t, bus, OtherUser)
	// The helper exports nothing, but the bus must refuse before asking it.
	_, errOut, code := bus.Busctl(t, OtherUser, "call", owner, "/", "org.freedesktop.DBus.Peer", "Ping")
	if code == 0 || !strings.Contains(errOut, "Access denied") {
		t.Fatalf("call to %s allowed by the bus (exit %d): %s", owner, code, errOut)
	}
}

func TestBusAcceptsOtherUsersAndKnowsTheirUID(t *testing.T) {
	RequireRoot(t)
	bus := StartBus(t)
	out, errOut, code := bus.Busctl(t, OtherUser, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
		"org.freedesktop.DBus", "GetId")
	if code != 0 || !strings.HasPrefix(out, "s ") {
		t.Fatalf("busctl as %s: exit %d: %s%s", OtherUser, code, out, errOut)
	}
	uid, _ := EnsureUser(t, OtherUser)
	name := startClientAs(t, bus, OtherUser)
	if got := connUID(t, bus.Conn(t), name); got != uint32(uid) {
		t.Fatalf("bus says %s is uid %d, want %d", name, got, uid)
	}
}

func TestServiceRunsAsServiceUserOwnsNameAndRestarts(t *testing.T) {
	RequireRoot(t)
	bus := StartBus(t)
	svc := StartService(t, bus, ServiceOptions{
		Binary:  helperBinary(t),
		User:    ServiceUser,
		Env:     append(helperEnv(), "EDGEV2_TESTENV_NAME="+keysName),
		BusName: keysName,
	})
	conn := bus.Conn(t)
	uid, _ := EnsureUser(t, ServiceUser)
	if got := connUID(t, conn, keysName); got != uint32(uid) {
		t.Fatalf("%s owned by uid %d, want %s (%d)", keysName, got, ServiceUser, uid)
	}
	if rss := svc.RSSKiB(); rss <= 0 {
		t.Fatalf("RSSKiB = %d", rss)
	}
	if code := svc.Stop(t); code != 0 {
		t.Fatalf("Stop: exit code %d, want 0; output:\n%s", code, svc.Output())
	}
	first := svc.Pid()
	svc.Restart(t)
	if svc.Pid() == first {
		t.Fatalf("Restart kept pid %d", first)
	}
	svc.Kill9(t)
	if err := syscall.Kill(svc.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there after Kill9: %v", svc.Pid(), err)
	}
	if n := strings.Count(svc.Output(), "unique="); n != 2 {
		t.Fatalf("output holds %d runs, want 2:\n%s", n, svc.Output())
	}
}

func TestPolkitAllowsRootToReadKeys(t *testing.T) {
	bus := StartBus(t)
	pk := StartPolkit(t, bus)
	conn := bus.Conn(t)
	if ok, _ := pk.Check(t, conn.Names()[0], "org.edgev2.keys.read", nil); !ok {
		t.Fatalf("org.edgev2.keys.read denied to root")
	}
}

func TestPolkitDeniesOtherUserUseUntilRuleGrantsThatKey(t *testing.T) {
	bus := StartBus(t)
	pk := StartPolkit(t, bus)
	other := startClientAs(t, bus, OtherUser)
	granted := map[string]string{"key_id": "granted"}
	elsewhere := map[string]string{"key_id": "other"}

	if ok, challenge := pk.Check(t, other, "org.edgev2.keys.use", granted); ok || challenge {
		t.Fatalf("before the rule: authorized=%v challenge=%v, want denied outright", ok, challenge)
	}
	t.Run("with rule", func(t *testing.T) {
		start := time.Now()
		pk.AddRule(t, "grant-use", `polkit.addRule(function(action, subject) {
    if (action.id == "org.edgev2.keys.use" && subject.user == "edgev2-tester" &&
        action.lookup("key_id") == "granted") return polkit.Result.YES;
});`)
		t.Logf("rule loaded in %v", time.Since(start))
		if ok, _ := pk.Check(t, other, "org.edgev2.keys.use", granted); !ok {
			t.Fatalf("key granted by rule: denied")
		}
		if ok, _ := pk.Check(t, other, "org.edgev2.keys.use", elsewhere); ok {
			t.Fatalf("key the rule does not name: authorized")
		}
	})
	if ok, _ := pk.Check(t, other, "org.edgev2.keys.use", granted); ok {
		t.Fatalf("after the rule was removed: still authorized")
	}
}

func TestAddRuleReportsRulesPolkitCannotLoad(t *testing.T) {
	// A rules file with a syntax error is skipped by polkitd; AddRule must
	// say so instead of letting the test run against the old rules.
	bus := StartBus(t)
	pk := StartPolkit(t, bus)
	ft := &fatalRecorder{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pk.AddRule(ft, "broken", `polkit.addRule(function(action, subject) {`)
	}()
	<-done
	if !strings.Contains(ft.msg, "SyntaxError") {
		t.Fatalf("AddRule of a broken rule: got fatal %q", ft.msg)
	}
}

// fatalRecorder records Fatalf instead of failing, for testing the harness's
// own failure reports. Its cleanups run at the end of the real test.
type fatalRecorder struct {
	*testing.T
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	if f.msg == "" {
		f.msg = fmt.Sprintf(format, args...)
	}
	runtime.Goexit()
}
