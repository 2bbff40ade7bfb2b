package testenv

import (
	"errors"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// ServiceUser is the uid the Keys service runs as; the bus policy lets
	// only it own org.edgev2.Keys1, and it owns the polkit actions.
	ServiceUser = "edgekeys"
	// CertsUser runs the Certificates service.
	CertsUser = "edgecerts"
	// IdentityUser runs the Identity service.
	IdentityUser = "edgeid"
	// OtherUser is the unprivileged second uid tests call the services as.
	OtherUser = "edgev2-tester"
)

// AllUsers are the users bus policies and polkit rules name; they must
// exist before dbus-daemon parses its policy.
var AllUsers = []string{ServiceUser, CertsUser, IdentityUser, OtherUser}

// EnsureAllUsers creates every user in AllUsers.
func EnsureAllUsers(t TB) {
	t.Helper()
	for _, u := range AllUsers {
		EnsureUser(t, u)
	}
}

// useradd exit codes (shadow-utils).
const (
	useraddCantLock = 10
	useraddExists   = 9
)

var usersMu sync.Mutex

// EnsureUser returns the ids of the system user name, creating it (with a
// group of the same name, no home, no login shell) if it is missing.
// Parallel test processes may race to create the same user: "already
// exists" counts as success and a locked /etc/passwd is retried.
func EnsureUser(t TB, name string) (uid, gid int) {
	t.Helper()
	usersMu.Lock()
	defer usersMu.Unlock()
	if uid, gid, err := lookupUser(name); err == nil {
		return uid, gid
	} else if !errors.As(err, new(user.UnknownUserError)) {
		t.Fatalf("look up user %q: %v", name, err)
	}
	RequireRoot(t)
	if _, err := exec.LookPath("useradd"); err != nil {
		Missing(t, "useradd", "creating the test users needs it (package passwd)")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("useradd", "--system", "--no-create-home",
			"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
		code := exitCode(err)
		if err == nil || code == useraddExists {
			break
		}
		if code == useraddCantLock && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("useradd %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	uid, gid, err := lookupUser(name)
	if err != nil {
		t.Fatalf("look up user %q after creating it: %v", name, err)
	}
	return uid, gid
}

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, err
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

// exitCode is the exit status carried by err from exec, 0 for nil and -1
// when the process did not exit normally (or never started).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
