package labhost

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("root is required under CI=true (port 443 and /etc/hosts)")
		}
		t.Skip("needs root: port 443 and /etc/hosts")
	}
}

func hostsLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(hostsPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[1] == name {
			out = append(out, l)
		}
	}
	return out
}

// Two instances at once: each its own address and port-less name, both
// resolving through the system resolver and both serving on 443.
func TestTwoHostsAtOnceEachResolveToTheirOwnListener(t *testing.T) {
	requireRoot(t)
	var hosts [2]Host
	var lns [2]net.Listener
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); hosts[i], lns[i] = Listen(t) }()
	}
	wg.Wait()
	if hosts[0].IP == hosts[1].IP || hosts[0].Name == hosts[1].Name {
		t.Fatalf("two reservations share an address or name: %+v", hosts)
	}
	for i, h := range hosts {
		if strings.Contains(h.Name, ":") || !strings.HasSuffix(h.Name, "."+Domain) {
			t.Errorf("name %q: want a bare name under %s", h.Name, Domain)
		}
		go func() {
			if c, err := lns[i].Accept(); err == nil {
				fmt.Fprintf(c, "%d\n", i)
				c.Close()
			}
		}()
		// Dial by name on 443, as a client given only the host name does.
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(context.Background(), "tcp", net.JoinHostPort(h.Name, "443"))
		if err != nil {
			t.Fatalf("dial %s:443: %v", h.Name, err)
		}
		got, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got != fmt.Sprintf("%d\n", i) {
			t.Errorf("%s:443 reached listener %q, want %d", h.Name, got, i)
		}
		if l := hostsLines(t, h.Name); len(l) != 1 || !strings.HasPrefix(l[0], h.IP.String()+" ") {
			t.Errorf("/etc/hosts lines for %s: %q, want one naming %s", h.Name, l, h.IP)
		}
	}
}

// A process killed with SIGKILL runs no cleanup: its reaper still removes
// its lines.
func TestLinesGoneWhenTheOwnerIsKilled(t *testing.T) {
	requireRoot(t)
	if os.Getenv("LABHOST_CHILD") == "1" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLabhostChild$")
	cmd.Env = append(os.Environ(), "LABHOST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	var name string
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "NAME "); ok {
			name = n
			break
		}
	}
	if name == "" {
		t.Fatal("the child printed no name")
	}
	if l := hostsLines(t, name); len(l) != 1 {
		t.Fatalf("while the child runs, lines for %s: %q, want one", name, l)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for len(hostsLines(t, name)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after kill -9 of its owner, /etc/hosts still names %s", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLabhostChild is the child of TestLinesGoneWhenTheOwnerIsKilled.
func TestLabhostChild(t *testing.T) {
	if os.Getenv("LABHOST_CHILD") != "1" {
		return
	}
	h, _ := Listen(t)
	fmt.Printf("NAME %s\n", h.Name)
	time.Sleep(time.Minute)
}

// A line whose owner is gone (or whose pid now belongs to another process)
// is swept; others' lines and foreign lines stay.
func TestSweepDropsLinesOfDeadOwners(t *testing.T) {
	me := os.Getpid()
	data := fmt.Sprintf("127.0.0.1 localhost\n127.77.1.1 hub-1-1.labcloud.test %s pid=%d start=%s\n127.77.1.2 hub-1-2.labcloud.test %s pid=%d start=1\n127.77.1.3 hub-1-3.labcloud.test %s pid=999999999 start=5\n127.77.1.4 hub-1-4.labcloud.test %s\n10.0.0.1 other # edgev2-labhostile\n",
		marker, me, startTime(me), marker, me, marker, marker)
	out, dropped := sweep([]byte(data), alive)
	want := fmt.Sprintf("127.0.0.1 localhost\n127.77.1.1 hub-1-1.labcloud.test %s pid=%d start=%s\n10.0.0.1 other # edgev2-labhostile\n", marker, me, startTime(me))
	if dropped != 3 || string(out) != want {
		t.Errorf("sweep dropped %d:\n%s\nwant 3:\n%s", dropped, out, want)
	}
}
