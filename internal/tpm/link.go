package tpm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/tpm/ptool"
)

// LinkOptions says where to link the LDevID into tpm2-pkcs11.
type LinkOptions struct {
	Store    string // TPM2_PKCS11_STORE directory (initialised with tpm2_ptool init/addtoken)
	Token    string // token label
	PIN      []byte // user PIN of the token
	KeyLabel string // CKA_LABEL of the linked key; "ldevid" if empty
	BlobDir  string // where CreateLDevID wrote ldevid.pub / ldevid.priv
	TCTI     string // TPM2_PKCS11_TCTI for the tool; inherited from the environment if empty
}

// LinkLDevID links the LDevID (by its blobs, under the store's primary,
// which must be the SRK at 0x81000001) into the tpm2-pkcs11 token as a
// private key labelled KeyLabel, so keyd can use it as a preloaded
// pkcs11: key. tpm2_ptool is the only writer of the store's database,
// hence the one exec in this package. A key already linked under that
// label is left as it is (linked=false).
func LinkLDevID(ctx context.Context, opt LinkOptions) (linked bool, err error) {
	if opt.KeyLabel == "" {
		opt.KeyLabel = "ldevid"
	}
	switch {
	case opt.Store == "":
		return false, fault.New(fault.InvalidArgs, "link needs the tpm2-pkcs11 store directory (--store DIR)")
	case opt.Token == "":
		return false, fault.New(fault.InvalidArgs, "link needs the token label (--token LABEL)")
	case len(opt.PIN) == 0:
		return false, fault.New(fault.InvalidArgs, "link needs the token's user PIN (--pin-file FILE)")
	}
	if st, err := os.Stat(filepath.Join(opt.Store, "tpm2_pkcs11.sqlite3")); err != nil || st.IsDir() {
		return false, fault.New(fault.NotFound, "%s is not a tpm2-pkcs11 store (no tpm2_pkcs11.sqlite3); make one: tpm2_ptool init --primary-handle 0x81000001 --path %s, then tpm2_ptool addtoken", opt.Store, opt.Store)
	}
	pub, priv := filepath.Join(opt.BlobDir, "ldevid.pub"), filepath.Join(opt.BlobDir, "ldevid.priv")
	for _, p := range []string{pub, priv} {
		if _, err := os.Stat(p); err != nil {
			return false, fault.New(fault.NotFound, "%s is missing: the LDevID's key blobs are written by edgectl tpm ldevid create --blobs %s (a persistent key cannot be exported again; recreate it with --force)", p, opt.BlobDir)
		}
	}
	out, err := runPtool(ctx, opt, "listobjects", "--label", opt.Token, "--path", opt.Store)
	if err != nil {
		return false, err
	}
	if strings.Contains(out, "CKA_LABEL: "+opt.KeyLabel+"\n") {
		return false, nil
	}
	if _, err := runPtool(ctx, opt, "link", "--label", opt.Token, "--userpin", string(opt.PIN), "--key-label", opt.KeyLabel, "--path", opt.Store, pub, priv); err != nil {
		return false, err
	}
	return true, nil
}

func runPtool(ctx context.Context, opt LinkOptions, args ...string) (string, error) {
	cmd, err := ptool.Command(ctx, args...)
	if err != nil {
		return "", err
	}
	cmd.Env = os.Environ()
	if opt.TCTI != "" {
		cmd.Env = append(cmd.Env, "TPM2_PKCS11_TCTI="+opt.TCTI, "TPM2TOOLS_TCTI="+opt.TCTI)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := lastLine(stderr.String())
		if len(opt.PIN) > 0 {
			msg = strings.ReplaceAll(msg, string(opt.PIN), "***")
		}
		return "", fault.Wrap(fault.Failed, err, "tpm2_ptool %s in %s: %s", args[0], opt.Store, msg)
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
