package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/internal/credential"
)

// The seal settings apply passes to systemd-creds (--with-key=), and the
// two it resolves itself.
const (
	sealAuto     = "auto"
	sealTPM2Host = credential.SealTPM2Host
	sealHost     = credential.SealHost
	sealNone     = "none"
)

// tpmPresent says whether this machine has a TPM 2.0 resource manager
// that systemd-creds can seal to.
var tpmPresent = func() bool {
	_, err := os.Stat("/dev/tpmrm0")
	return err == nil
}

// resolveSeal turns [secrets] seal into what systemd-creds is asked for.
// Under --root the target's own TPM is not this machine's: host only.
func resolveSeal(seal, root string) string {
	if seal != sealAuto && seal != "" {
		return seal
	}
	if root == "" && tpmPresent() {
		return sealTPM2Host
	}
	return sealHost
}

// resolveCredentials settles each credential's seal and adds, as files to
// remove, every edgev2 credential in the stores that this configuration no
// longer has (a secret must not outlive its setting).
func resolveCredentials(files []installFile, root string) ([]installFile, error) {
	keep := map[string]bool{}
	out := make([]installFile, 0, len(files))
	for _, f := range files {
		if f.Credential != "" {
			f.Seal = resolveSeal(f.Seal, root)
			if err := credential.ValidName(f.Credential); err != nil {
				return nil, err
			}
			keep[f.Path] = true
		}
		out = append(out, f)
	}
	for _, dir := range []string{credential.StoreDir, credential.ClearStoreDir} {
		found, _ := filepath.Glob(filepath.Join(root, dir, "edgev2.*"))
		for _, p := range found {
			rel := filepath.Join(dir, filepath.Base(p))
			if keep[rel] {
				continue
			}
			out = append(out, installFile{Path: rel, Remove: true, Service: credential.Unit(filepath.Base(p))})
		}
		// Temporary files of an apply killed before its rename
		// (atomicfile): in the clear store they hold a secret in clear.
		tmps, _ := filepath.Glob(filepath.Join(root, dir, ".tmp-edgev2.*"))
		for _, p := range tmps {
			out = append(out, installFile{Path: filepath.Join(dir, filepath.Base(p)), Remove: true})
		}
	}
	return out, nil
}

// credsEnv is systemd-creds' environment: under --root, the target's host
// key, not this machine's.
func credsEnv(root string) []string {
	env := os.Environ()
	if root != "" {
		env = append(env, "SYSTEMD_CREDENTIAL_SECRET="+filepath.Join(root, "/var/lib/systemd/credential.secret"))
	}
	return env
}

// systemdCreds runs systemd-creds with the secret on stdin, never argv.
var systemdCreds = func(ctx context.Context, root string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "systemd-creds", args...)
	cmd.Env = credsEnv(root)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("systemd-creds is not installed (package systemd, 250 or later); or set [secrets] seal = \"none\"")
		}
		// stderr is systemd-creds' own message: it never holds the secret.
		return nil, fmt.Errorf("systemd-creds %s: %v: %s", args[0], err, lastLine(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// sealCredential encrypts plain as credential name (the name is sealed in:
// systemd refuses to load it under another).
func sealCredential(ctx context.Context, name, seal, root string, plain []byte) ([]byte, error) {
	if root != "" {
		if err := os.MkdirAll(filepath.Join(root, "/var/lib/systemd"), 0o755); err != nil {
			return nil, err
		}
	}
	out, err := systemdCreds(ctx, root, plain, "encrypt", "--name="+name, "--with-key="+seal, "-", "-")
	if err != nil {
		return nil, fmt.Errorf("seal credential %s: %w", name, err)
	}
	if got := credential.Sealing(out); got != seal {
		return nil, fmt.Errorf("seal credential %s: systemd-creds wrote a credential sealed to %q, not %s", name, got, seal)
	}
	return out, nil
}

// diffCredential says why the installed credential at path differs from
// f ("" if it holds the same secret, sealed the same way, with the same
// owner and mode). A sealed one is decrypted to compare: sealing is
// randomised, so its bytes change at every encryption.
func diffCredential(ctx context.Context, path string, f installFile, root string, uid, gid int) (string, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "new", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "content", nil
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if f.Seal == sealNone {
		if !bytes.Equal(old, f.Data) {
			return "content", nil
		}
	} else {
		if credential.Sealing(old) != f.Seal {
			return "seal", nil
		}
		plain, err := systemdCreds(ctx, root, nil, "decrypt", "--name="+f.Credential, path, "-")
		if err != nil || !bytes.Equal(plain, f.Data) {
			// Undecryptable here (another host key, a TPM reset) or
			// another secret: seal it again.
			return "content", nil
		}
	}
	return metaChange(st, f.Mode, uid, gid), nil
}

// needsReload says whether a changed file is a unit drop-in.
func needsReload(files []installFile, changes []fileChange) bool {
	reload := map[string]bool{}
	for _, f := range files {
		if f.DaemonReload || (f.Remove && strings.HasPrefix(f.Path, "/etc/systemd/system/")) {
			reload[f.Path] = true
		}
	}
	for _, c := range changes {
		for p := range reload {
			if c.Changed && strings.HasSuffix(c.Path, p) {
				return true
			}
		}
	}
	return false
}

// daemonReload is `systemctl daemon-reload`.
var daemonReload = func(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "systemctl", "daemon-reload").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl daemon-reload: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
