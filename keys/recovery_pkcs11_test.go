package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/testenv"
)

func TestNextRecoverDelayIsCapped(t *testing.T) {
	d := recoverFirstDelay
	for i := 0; i < 100; i++ {
		n := nextRecoverDelay(d)
		if n < d && d < recoverMaxDelay || n > recoverMaxDelay {
			t.Fatalf("after %s came %s; want growth up to %s", d, n, recoverMaxDelay)
		}
		d = n
	}
	if d != recoverMaxDelay {
		t.Fatalf("back-off settles at %s, want %s", d, recoverMaxDelay)
	}
}

// remoteToken is a SoftHSM token behind `p11-kit server`, opened in this
// process through p11-kit-client.so.
func remoteToken(t *testing.T, label string) (*PKCS11Engine, *testenv.P11KitServer, *testenv.SoftHSMToken, *testenv.Buffer) {
	t.Helper()
	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(t, label, uid, gid)
	srv := testenv.StartP11KitServer(t, tok, testenv.ServiceUser)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	logs := &testenv.Buffer{}
	e, err := OpenPKCS11(context.Background(), PKCS11Config{LibPath: srv.ClientLib, BaseSlot: tok.URI(), PoolSize: 4,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("OpenPKCS11 through p11-kit: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e, srv, tok, logs
}

func waitLog(t *testing.T, logs *testenv.Buffer, text string) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() bool { return strings.Contains(logs.String(), text) },
		"no %q logged:\n%s", text, logs)
}

// TestPKCS11RecoversFromALostTokenUnderConcurrentUse: signers keep calling
// while the token server dies, keyd fails to reconnect, and the server comes
// back. Every failure is Unavailable; afterwards each handle signs with its
// own key (handles found before the re-initialisation are never reused — in
// the new server they may name another object).
func TestPKCS11RecoversFromALostTokenUnderConcurrentUse(t *testing.T) {
	e, srv, _, logs := remoteToken(t, "edgev2-recover")
	ctx := context.Background()
	var handles []Handle
	for _, id := range []string{"a", "b", "c"} {
		h, err := e.Generate(ctx, id, Spec{Type: ECP256})
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	digest := sha256.Sum256([]byte("payload"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []error
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				h := handles[(i+n)%len(handles)]
				sig, err := h.SignDigest(ctx, digest[:], crypto.SHA256, false)
				switch {
				case err == nil:
					if !ecdsa.VerifyASN1(h.Info().Public.(*ecdsa.PublicKey), digest[:], sig) {
						mu.Lock()
						unexpected = append(unexpected, fmt.Errorf("key %s: a signature that does not verify with its own public key", h.Info().ID))
						mu.Unlock()
					}
				case !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "edgev2-recover"):
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
				default:
					time.Sleep(5 * time.Millisecond)
				}
			}
		}(i)
	}
	srv.Kill(t)
	waitLog(t, logs, "pkcs11 token lost")
	waitLog(t, logs, "pkcs11 token still unavailable")
	srv.Start(t)
	waitLog(t, logs, "pkcs11 token back")
	// Every handle works again (bounded poll: "back" is logged before the
	// signers next get a session).
	for _, h := range handles {
		var sig []byte
		testenv.EventuallyNoError(t, 30*time.Second, func() (err error) {
			sig, err = h.SignDigest(ctx, digest[:], crypto.SHA256, false)
			return err
		}, "key %s after recovery", h.Info().ID)
		if !ecdsa.VerifyASN1(h.Info().Public.(*ecdsa.PublicKey), digest[:], sig) {
			t.Fatalf("key %s signs with another key after recovery", h.Info().ID)
		}
	}
	close(stop)
	wg.Wait()
	for _, err := range unexpected {
		t.Errorf("during the outage: %v", err)
	}
	if _, err := e.Generate(ctx, "d", Spec{Type: ECP256}); err != nil {
		t.Fatalf("Generate after recovery: %v", err)
	}
}

// TestPKCS11RecoveryNeverRetriesARefusedPIN: the token comes back with a
// changed user PIN. keyd tries its PIN once, keeps the token's keys
// Unavailable saying the PIN is refused, and never tries it again (a
// token locks after a few wrong PINs).
func TestPKCS11RecoveryNeverRetriesARefusedPIN(t *testing.T) {
	e, srv, tok, logs := remoteToken(t, "edgev2-recover-pin")
	ctx := context.Background()
	h, err := e.Generate(ctx, "a", Spec{Type: ECP256})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("payload"))
	srv.Kill(t)
	if _, err := h.SignDigest(ctx, digest[:], crypto.SHA256, false); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("Sign with the server down = %v; want Unavailable", err)
	}
	waitLog(t, logs, "pkcs11 token still unavailable")
	// Change the user PIN behind keyd's back.
	cmd := exec.Command("pkcs11-tool", "--module", tok.LibPath, "--login", "--pin", tok.PIN, "--change-pin", "--new-pin", "87654321")
	cmd.Env = append(os.Environ(), tok.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool --change-pin: %v\n%s", err, out)
	}
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), tok.Dir).Run()
	srv.Start(t)
	waitLog(t, logs, "its PIN is refused")
	for i := 0; i < 5; i++ {
		_, err := h.SignDigest(ctx, digest[:], crypto.SHA256, false)
		if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "PIN") {
			t.Fatalf("Sign after the PIN was refused = %v; want Unavailable saying the PIN is wrong", err)
		}
		if strings.Contains(err.Error(), tok.PIN) {
			t.Fatalf("the error shows the PIN: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "its PIN is refused"); n != 1 {
		t.Fatalf("the PIN was tried %d times after recovery; want once:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), tok.PIN) {
		t.Fatalf("the log shows the PIN:\n%s", logs)
	}
}

// within runs fn and fails the test if it has not returned after d: what
// it proves is that keyd does not hang, so a hang must fail, not block.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s: keyd hangs on a token that does not answer", what, d)
	}
}

// TestPKCS11HungTokenIsUnavailableAndHoldsNothingElse: the token's server
// accepts and never answers (SIGSTOP), as a wedged remote HSM does. The
// call caught in the hang stays in the C library until the server answers
// again (nothing can interrupt it), but within the watchdog's limit the
// token is reported as not answering and every other call on it answers
// Unavailable at once; another token in the same process, behind another
// module, keeps opening and signing; Close of the hung engine returns.
// Once the server answers, the stuck call returns.
func TestPKCS11HungTokenIsUnavailableAndHoldsNothingElse(t *testing.T) {
	shortCallLimit(t)
	// Generous against the 3s limit: a loaded machine may be slow, but
	// not by tens of seconds.
	const bound = 60 * time.Second

	e, srv, logs, h, digest := remoteKey(t, "edgev2-hang")
	ctx := context.Background()
	var err error
	if _, err := h.SignDigest(ctx, digest[:], crypto.SHA256, false); err != nil {
		t.Fatalf("Sign before the hang: %v", err)
	}

	srv.Pause(t)
	t.Cleanup(func() { srv.Resume(t) })
	stuck := signInBackground(h, digest[:])
	waitHung(t, logs, 1)
	// Every other call on the token answers at once, the stuck one
	// still in the module.
	for i := 0; i < 2; i++ {
		within(t, bound, "Sign on the hung token", func() {
			_, err = h.SignDigest(ctx, digest[:], crypto.SHA256, false)
		})
		if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not answering") || !strings.Contains(err.Error(), "edgev2-hang") {
			t.Fatalf("Sign on the hung token = %v; want Unavailable saying token edgev2-hang is not answering", err)
		}
	}
	within(t, bound, "Generate on the hung token", func() {
		_, err = e.Generate(ctx, "b", Spec{Type: ECP256})
	})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not answering") {
		t.Fatalf("Generate on the hung token = %v; want Unavailable saying it is not answering", err)
	}

	// Another token, another module, opened and used while the first hangs.
	other := newSoftHSM(t)
	within(t, bound, "OpenPKCS11 of another token", func() {
		o, err := OpenPKCS11(ctx, PKCS11Config{LibPath: other.LibPath, BaseSlot: other.URI()})
		if err != nil {
			t.Errorf("OpenPKCS11 of another token while one hangs: %v", err)
			return
		}
		defer o.Close()
		oh, err := o.Generate(ctx, "b", Spec{Type: ECP256})
		if err != nil {
			t.Errorf("Generate on another token while one hangs: %v", err)
			return
		}
		sig, err := oh.SignDigest(ctx, digest[:], crypto.SHA256, false)
		if err != nil || !ecdsa.VerifyASN1(oh.Info().Public.(*ecdsa.PublicKey), digest[:], sig) {
			t.Errorf("Sign on another token while one hangs: %v", err)
		}
	})

	// The token answers again: the stuck call returns, recovery
	// re-initialises the module, and the key signs again.
	srv.Resume(t)
	within(t, bound, "the Sign caught in the hang, once the token answers", func() { <-stuck })
	waitLog(t, logs, "pkcs11 token back")
	testenv.EventuallyNoError(t, 30*time.Second, func() error {
		_, err := h.SignDigest(ctx, digest[:], crypto.SHA256, false)
		return err
	}, "Sign after the token answers again")

	// Hung again, with a call stuck in it: Close gives up on the module
	// instead of finalising it under the call.
	hung := hungLogged(logs)
	srv.Pause(t)
	stuck = signInBackground(h, digest[:])
	waitHung(t, logs, hung+1)
	within(t, bound, "Sign on the hung token", func() {
		_, err = h.SignDigest(ctx, digest[:], crypto.SHA256, false)
	})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not answering") {
		t.Fatalf("Sign on the hung token = %v; want Unavailable saying it is not answering", err)
	}
	within(t, bound, "Close of the hung engine", func() { e.Close() })
	waitLog(t, logs, "closed without finalising it")
	srv.Resume(t)
	within(t, bound, "the Sign caught in the hang, once the token answers", func() { <-stuck })
}

// signInBackground signs with h on another goroutine; the channel is
// closed when the call returns, whatever it returns.
func signInBackground(h Handle, digest []byte) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.SignDigest(context.Background(), digest, crypto.SHA256, false)
	}()
	return done
}

// hungLogged counts the log lines of the watchdog finding a call stuck in
// the module (a failed reconnection logs "still unavailable" instead).
func hungLogged(logs *testenv.Buffer) int {
	n := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "pkcs11 token lost; reconnecting") && strings.Contains(l, "not answering") {
			n++
		}
	}
	return n
}

// shortCallLimit makes the watchdog's limit 3 s for the test.
func shortCallLimit(t *testing.T) {
	old := p11CallLimit
	p11CallLimit = 3 * time.Second
	t.Cleanup(func() { p11CallLimit = old })
}

// remoteKey is remoteToken with an ECDSA key "a" made on it, and a digest
// to sign.
func remoteKey(t *testing.T, label string) (*PKCS11Engine, *testenv.P11KitServer, *testenv.Buffer, Handle, []byte) {
	t.Helper()
	e, srv, _, logs := remoteToken(t, label)
	h, err := e.Generate(context.Background(), "a", Spec{Type: ECP256})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("payload"))
	return e, srv, logs, h, digest[:]
}

// waitHung waits until the watchdog has found a stuck call n times.
func waitHung(t *testing.T, logs *testenv.Buffer, n int) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() bool { return hungLogged(logs) >= n },
		"no stuck call reported (%d times wanted):\n%s", n, logs)
}

func TestPKCS11HangDuringRecoveryIsBounded(t *testing.T) {
	shortCallLimit(t)
	const bound = 60 * time.Second

	e, srv, logs, h, digest := remoteKey(t, "edgev2-hang-recover")
	ctx := context.Background()
	var err error
	srv.Kill(t)
	if _, err := h.SignDigest(ctx, digest[:], crypto.SHA256, false); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("Sign with the server down = %v; want Unavailable", err)
	}
	waitLog(t, logs, "pkcs11 token still unavailable")
	srv.Start(t)
	srv.Pause(t)
	t.Cleanup(func() { srv.Resume(t) })
	// The next attempt connects and hangs (or, had it been quick enough
	// to finish before the pause, this call hangs until the server
	// answers): either way the watchdog reports the token as not
	// answering.
	first := signInBackground(h, digest[:])
	waitLog(t, logs, "not answering")
	for i := 0; i < 3; i++ {
		within(t, bound, "Sign while the reconnection hangs", func() {
			_, err = h.SignDigest(ctx, digest[:], crypto.SHA256, false)
		})
		if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "edgev2-hang-recover") {
			t.Fatalf("Sign while the reconnection hangs = %v; want Unavailable naming the token", err)
		}
	}
	within(t, bound, "Close while the reconnection hangs", func() { e.Close() })
	srv.Resume(t)
	within(t, bound, "the first Sign, once the token answers", func() { <-first })
}

// TestPKCS11ModuleHungAtInitialiseHoldsNoOtherModule: p11-kit's client
// connects to its server in C_Initialize; with the server paused, opening
// the module fails Unavailable within the watchdog's limit instead of
// hanging, and another module (SoftHSM, directly) opens and signs
// meanwhile. Once the server answers, the module opens.
func TestPKCS11ModuleHungAtInitialiseHoldsNoOtherModule(t *testing.T) {
	shortCallLimit(t)
	const bound = 60 * time.Second

	testenv.RequireRoot(t)
	uid, gid := testenv.EnsureUser(t, testenv.ServiceUser)
	tok := testenv.NewSoftHSMToken(t, "edgev2-hang-init", uid, gid)
	srv := testenv.StartP11KitServer(t, tok, testenv.ServiceUser)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	srv.Pause(t)
	t.Cleanup(func() { srv.Resume(t) })
	ctx := context.Background()
	var err error
	within(t, bound, "OpenPKCS11 of a module that does not answer", func() {
		var e *PKCS11Engine
		if e, err = OpenPKCS11(ctx, PKCS11Config{LibPath: srv.ClientLib, BaseSlot: tok.URI()}); err == nil {
			e.Close()
		}
	})
	if !fault.Is(err, fault.Unavailable) || !strings.Contains(err.Error(), "not answering") || strings.Contains(err.Error(), tok.PIN) {
		t.Fatalf("OpenPKCS11 with the server paused = %v; want Unavailable saying the module is not answering", err)
	}

	other := newSoftHSM(t)
	within(t, bound, "OpenPKCS11 of another module", func() {
		o, err := OpenPKCS11(ctx, PKCS11Config{LibPath: other.LibPath, BaseSlot: other.URI()})
		if err != nil {
			t.Errorf("OpenPKCS11 of another module while one hangs: %v", err)
			return
		}
		defer o.Close()
		digest := sha256.Sum256([]byte("payload"))
		oh, err := o.Generate(ctx, "b", Spec{Type: ECP256})
		if err == nil {
			_, err = oh.SignDigest(ctx, digest[:], crypto.SHA256, false)
		}
		if err != nil {
			t.Errorf("another module while one hangs: %v", err)
		}
	})

	srv.Resume(t)
	testenv.EventuallyNoError(t, 30*time.Second, func() error {
		e, err := OpenPKCS11(ctx, PKCS11Config{LibPath: srv.ClientLib, BaseSlot: tok.URI()})
		if err == nil {
			e.Close()
		}
		return err
	}, "OpenPKCS11 once the server answers")
}
