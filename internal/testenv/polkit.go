package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
)

// Where polkitd reads actions and rules; it has no option to read others.
const (
	polkitd          = "/usr/lib/polkit-1/polkitd"
	polkitActionsDir = "/usr/share/polkit-1/actions"
	polkitRulesDir   = "/etc/polkit-1/rules.d"
	polkitUser       = "polkitd"
)

const (
	polkitName      = "org.freedesktop.PolicyKit1"
	polkitPath      = "/org/freedesktop/PolicyKit1/Authority"
	polkitInterface = "org.freedesktop.PolicyKit1.Authority"
)

// probeAction lets AddRule see when polkitd has loaded (or dropped) a
// rules file: every file the harness writes carries a rule denying this
// action for that file's token, which is otherwise allowed to anyone.
const (
	probeAction = "org.edgev2.testenv.probe"
	probeDetail = "edgev2_testenv_probe"
	probePolicy = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE policyconfig PUBLIC "-//freedesktop//DTD PolicyKit Policy Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/PolicyKit/1/policyconfig.dtd">
<!-- Installed by edgev2's internal/testenv: lets the test harness see when
     polkitd has reloaded its rules. Safe to delete. -->
<policyconfig>
  <action id="org.edgev2.testenv.probe">
    <description>edgev2 test harness rules reload probe</description>
    <message>edgev2 test harness rules reload probe</message>
    <defaults>
      <allow_any>yes</allow_any>
      <allow_inactive>yes</allow_inactive>
      <allow_active>yes</allow_active>
    </defaults>
  </action>
</policyconfig>
`
)

// reloadTimeout bounds the wait for polkitd to pick up a rules change.
const reloadTimeout = 10 * time.Second

// Polkit is the real polkitd, serving the repo's actions on a private bus.
type Polkit struct {
	bus      *Bus
	proc     *process
	conn     *dbus.Conn        // root connection for checks
	changed  chan *dbus.Signal // Authority.Changed, on conn
	probeSub polkitSubject     // a non-root subject (polkitd itself)
	rulesDir string            // where polkitd sees /etc/polkit-1/rules.d
	shared   bool              // rulesDir is the real one, seen by every polkitd
	mu       sync.Mutex        // one rules change in flight at a time
	seq      atomic.Int64
}

// polkitSubject is polkit's (sa{sv}) subject.
type polkitSubject struct {
	Kind    string
	Details map[string]dbus.Variant
}

// StartPolkit starts polkitd on bus with the repo's policy/*.policy
// actions installed, and waits until it owns org.freedesktop.PolicyKit1
// (tens of ms). It is stopped on cleanup. Actions installed into the
// shared directory (no mount namespace) stay: other processes use them.
func StartPolkit(t TB, bus *Bus) *Polkit {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat(polkitd); err != nil {
		Missing(t, "polkitd", "polkit checks need the real daemon (package polkitd)")
	}
	if _, _, err := lookupUser(polkitUser); err != nil {
		Missing(t, "user polkitd", fmt.Sprintf("%v (package polkitd creates it)", err))
	}
	// Rules name these users; polkitd resolves users when rules run, but
	// tests need them before their first call anyway.
	EnsureAllUsers(t)

	// polkitd reads only /usr/share/polkit-1/actions and /etc/polkit-1/rules.d.
	// Where mount namespaces work, it gets private copies bind-mounted
	// there, so parallel test processes cannot see each other's rules.
	// Otherwise the real directories are shared, and rules files carry the
	// pid of the process that wrote them.
	//
	// polkitd 122 drops to user polkitd itself (setgroups+setuid) and exits
	// if it cannot, so it is started as root, like polkit.service does.
	// Without --no-debug it logs rule loading and JS errors to stderr.
	rulesDir, actionsDir, shared := polkitRulesDir, polkitActionsDir, !privateMountsWork()
	cmd := exec.Command(polkitd)
	if shared {
		t.Logf("testenv: no private mount namespace; polkitd uses the shared %s, "+
			"so rules of parallel test processes apply to each other", polkitRulesDir)
		removeStaleRules()
	} else {
		dir := SharedTempDir(t, "polkit")
		rulesDir, actionsDir = filepath.Join(dir, "rules.d"), filepath.Join(dir, "actions")
		for _, d := range []string{rulesDir, actionsDir} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatalf("make polkit dir: %v", err)
			}
		}
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
			`mount --bind "$1" `+polkitRulesDir+` && mount --bind "$2" `+polkitActionsDir+` && exec "$3"`,
			"sh", rulesDir, actionsDir, polkitd)
	}
	installActions(t, actionsDir, !shared)
	installShippedRules(t, rulesDir, shared)
	cmd.Env = []string{basePath, "DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}
	cmd.Dir = "/"
	proc, err := startProcess(cmd, &capBuffer{})
	if err != nil {
		t.Fatalf("start polkitd: %v", err)
	}
	p := &Polkit{bus: bus, proc: proc, rulesDir: rulesDir, shared: shared}
	t.Cleanup(func() {
		proc.stop(syscall.SIGTERM, 5*time.Second)
		logIfFailed(t, "polkitd", proc.out)
	})
	// The bus policy lets only user polkitd own the name, so owning it
	// also proves polkitd dropped root.
	switch err := bus.waitForName(polkitName, 20*time.Second, proc.done, 0); {
	case errors.Is(err, errExited):
		t.Fatalf("polkitd exited (code %d) before owning %s; output:\n%s", proc.exitCode(), polkitName, proc.out)
	case err != nil:
		t.Fatalf("polkitd: %v; output:\n%s", err, proc.out)
	}

	p.conn = bus.Conn(t)
	p.changed = make(chan *dbus.Signal, 64)
	p.conn.Signal(p.changed)
	if err := p.conn.AddMatchSignal(
		dbus.WithMatchSender(polkitName),
		dbus.WithMatchObjectPath(polkitPath),
		dbus.WithMatchInterface(polkitInterface),
		dbus.WithMatchMember("Changed"),
	); err != nil {
		t.Fatalf("subscribe to polkit Changed: %v", err)
	}
	startTime, err := procStartTime(proc.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("polkitd start time: %v", err)
	}
	uid, _, _ := lookupUser(polkitUser)
	p.probeSub = polkitSubject{Kind: "unix-process", Details: map[string]dbus.Variant{
		"pid":        dbus.MakeVariant(uint32(proc.cmd.Process.Pid)),
		"start-time": dbus.MakeVariant(startTime),
		"uid":        dbus.MakeVariant(int32(uid)),
	}}
	return p
}

// GrantRule is a polkit rule that lets user do action on the one object
// whose detail detailKey is value, and decides nothing else.
func GrantRule(action, user, detailKey, value string) string {
	return fmt.Sprintf(`polkit.addRule(function(action, subject) {
  if (action.id == %q && subject.user == %q && action.lookup(%q) == %q)
    return polkit.Result.YES;
});`, action, user, detailKey, value)
}

var ruleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// AddRule installs the JavaScript rules js as polkitd's
// /etc/polkit-1/rules.d/50-edgev2-test-<name>.rules and returns once
// polkitd has loaded it, failing with polkitd's complaint if it cannot;
// cleanup removes it and waits for the reload. Without a private mount
// namespace the directory is the real, shared one: the file name then
// carries the pid, and parallel test processes see each other's rules.
func (p *Polkit) AddRule(t TB, name, js string) {
	t.Helper()
	if !ruleName.MatchString(name) {
		t.Fatalf("rule name %q: use letters, digits, - and _", name)
	}
	file := fmt.Sprintf("50-edgev2-test-%s.rules", name)
	if p.shared {
		file = fmt.Sprintf("50-edgev2-test-%d-%s.rules", os.Getpid(), name)
	}
	path := filepath.Join(p.rulesDir, file)
	token := fmt.Sprintf("%d-%s-%d", os.Getpid(), name, p.seq.Add(1))
	var content bytes.Buffer
	fmt.Fprintf(&content, "// Written by edgev2 internal/testenv for test process %d.\n%s\n", os.Getpid(), js)
	fmt.Fprintf(&content, "polkit.addRule(function(action, subject) {\n"+
		"    if (action.id == %q && action.lookup(%q) == %q) return polkit.Result.NO;\n});\n",
		probeAction, probeDetail, token)

	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("polkit rule %q added twice in this test process", name)
	}
	mark := p.proc.out.mark()
	if err := writeAtomic(path, content.Bytes(), 0o644); err != nil {
		t.Fatalf("write polkit rule: %v", err)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if err := os.Remove(path); err != nil {
			t.Fatalf("remove polkit rule: %v", err)
		}
		if err := p.waitProbe(token, true, "", 0); err != nil {
			t.Fatalf("polkitd did not drop rule %s: %v", path, err)
		}
	})
	// polkitd logs the path it sees, the real one even for a private dir.
	if err := p.waitProbe(token, false, filepath.Join(polkitRulesDir, file), mark); err != nil {
		t.Fatalf("polkitd did not load rule %s: %v\npolkitd output:\n%s", path, err, p.proc.out)
	}
}

// waitProbe waits until the probe for token is allowed (rule gone) or
// denied (rule loaded). polkitd's Changed signal says when to look; a
// timer covers a reload whose signal came before the file was read. An
// error polkitd logs for path after mark ends the wait at once.
func (p *Polkit) waitProbe(token string, allowed bool, path string, mark int) error {
	deadline := time.Now().Add(reloadTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.proc.done:
			return errors.New("polkitd exited")
		default:
		}
		got, _, err := p.check(p.probeSub, probeAction, map[string]string{probeDetail: token})
		if err != nil {
			return err
		}
		if got == allowed {
			return nil
		}
		if path != "" {
			if line := errorLineFor(p.proc.out.since(mark), path); line != "" {
				return errors.New(line)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no reload within %v", reloadTimeout)
		}
		select {
		case <-p.changed:
		case <-tick.C:
		}
	}
}

// errorLineFor finds polkitd's complaint about path in its log, like
// "Error compiling script /etc/polkit-1/rules.d/x.rules: SyntaxError: ...".
func errorLineFor(log, path string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Error") && strings.Contains(line, path+":") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// Check asks polkitd, without interaction, whether the bus connection
// subjectBusName may do action with details, as the services do.
func (p *Polkit) Check(t TB, subjectBusName, action string, details map[string]string) (authorized, challenge bool) {
	t.Helper()
	subject := polkitSubject{Kind: "system-bus-name", Details: map[string]dbus.Variant{
		"name": dbus.MakeVariant(subjectBusName),
	}}
	authorized, challenge, err := p.check(subject, action, details)
	if err != nil {
		t.Fatalf("CheckAuthorization %s for %s: %v", action, subjectBusName, err)
	}
	return authorized, challenge
}

func (p *Polkit) check(subject polkitSubject, action string, details map[string]string) (authorized, challenge bool, err error) {
	if details == nil {
		details = map[string]string{}
	}
	var result struct {
		Authorized bool
		Challenge  bool
		Details    map[string]string
	}
	err = p.conn.Object(polkitName, polkitPath).Call(polkitInterface+".CheckAuthorization", 0,
		subject, action, details, uint32(0), "").Store(&result)
	return result.Authorized, result.Challenge, err
}

// installActions copies the repo's actions and the probe action into
// dir, leaving identical files alone so that, in the shared directory,
// other test processes' polkitds are not made to reload. A private dir
// first gets the system's actions, as an installed system has them.
func installActions(t TB, dir string, withSystem bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(RepoRoot(), "policy", "*.policy"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no polkit actions in %s/policy (err %v)", RepoRoot(), err)
	}
	if withSystem {
		system, _ := filepath.Glob(filepath.Join(polkitActionsDir, "*.policy"))
		files = append(system, files...)
	}
	want := map[string][]byte{"org.edgev2.testenv.policy": []byte(probePolicy)}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		want[filepath.Base(f)] = data
	}
	for name, data := range want {
		dst := filepath.Join(dir, name)
		if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, data) {
			continue
		}
		if err := writeAtomic(dst, data, 0o644); err != nil {
			t.Fatalf("install polkit action: %v", err)
		}
	}
}

var (
	mountsOnce sync.Once
	mountsOK   bool
)

// privateMountsWork reports whether this process may bind-mount in a new
// mount namespace (root with CAP_SYS_ADMIN, unshare(1) installed).
func privateMountsWork() bool {
	mountsOnce.Do(func() {
		err := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
			"mount --bind "+polkitRulesDir+" "+polkitRulesDir).Run()
		mountsOK = err == nil
	})
	return mountsOK
}

// removeStaleRules deletes rules left by test processes that died
// before their cleanup ran.
func removeStaleRules() {
	files, _ := filepath.Glob(filepath.Join(polkitRulesDir, "50-edgev2-test-*.rules"))
	for _, f := range files {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(f), "50-edgev2-test-"), "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && !processAlive(pid) {
			os.Remove(f)
		}
	}
}

// writeAtomic writes via a dot-file and rename, so polkitd (which skips
// dot-files) never reads a half-written file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".edgev2-testenv-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// procStartTime is field 22 of /proc/pid/stat, which polkit uses with the
// pid to name a process.
func procStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm (field 2) may hold spaces; fields after it start past ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// installShippedRules copies the repo's policy/*.rules (what the package
// installs in /usr/share/polkit-1/rules.d) into the rules directory polkitd
// reads, so tests see the shipped grants between services.
func installShippedRules(t TB, rulesDir string, shared bool) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(RepoRoot(), "policy", "*.rules"))
	for _, f := range files {
		name := filepath.Base(f)
		if shared {
			name = fmt.Sprintf("40-edgev2-test-%d-%s", os.Getpid(), name)
		}
		dst := filepath.Join(rulesDir, name)
		copyFile(t, f, dst, 0o644)
		if shared {
			t.Cleanup(func() { os.Remove(dst) })
		}
	}
}
