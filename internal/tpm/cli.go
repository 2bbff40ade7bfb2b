package tpm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
)

// DefaultBlobDir is where `ldevid create` keeps the LDevID's key blobs.
const DefaultBlobDir = "/var/lib/edgev2/tpm"

const usage = `usage: edgectl tpm [global flags] COMMAND

commands:
  status                                   TPM properties, lockout state, which identities exist
  ek [--template tcg|azure-sdk] [--persist]
                                           DPS registration id, and the EK's handle, template and certificate
  ek show [--alg rsa|ecc]                  the maker's EK certificate
  ek verify --ca FILE [--alg rsa|ecc]      verify the EK certificate against the maker's CA bundle
  idevid create [--alg ecc|rsa] [--force]  IDevID key under the endorsement hierarchy at 0x81020000
  idevid show | export [--cert] [--out FILE]
  idevid csr --cn CN [--serial SN] [--org O] [--out FILE]
  idevid set-cert FILE [--force]           store the IDevID certificate in NV 0x01C90000
  ldevid create [--alg ecc|rsa] [--force] [--blobs DIR]   SRK 0x81000001, LDevID 0x81000002
  ldevid show | export [--out FILE]
  ldevid csr --cn CN [--serial SN] [--org O] [--out FILE]
  ldevid enroll --est URL --est-ca FILE --cn CN [--serial SN] [--label L] [--out FILE]
                                           first EST enrollment, mutual TLS with the IDevID
  ldevid link --store DIR --token LABEL --pin-file FILE [--key-label ldevid] [--blobs DIR] [--tcti TCTI]
                                           link the LDevID into a tpm2-pkcs11 token (runs tpm2_ptool)

global flags (anywhere):
  --device PATH                 TPM character device (default /dev/tpmrm0)
  --address HOST:PORT           raw TPM command socket (swtpm --server) instead of a device
  --endorsement-auth-file FILE  endorsement hierarchy auth value, if set
  --owner-auth-file FILE        owner hierarchy auth value, if set
`

// cli is one invocation of edgectl tpm.
type cli struct {
	ctx            context.Context
	out, errw      io.Writer
	device, addr   string
	ehFile, ohFile string
}

func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.errw)
	fs.StringVar(&c.device, "device", c.device, "TPM character device")
	fs.StringVar(&c.addr, "address", c.addr, "raw TPM command socket host:port")
	fs.StringVar(&c.ehFile, "endorsement-auth-file", c.ehFile, "file holding the endorsement hierarchy auth")
	fs.StringVar(&c.ohFile, "owner-auth-file", c.ohFile, "file holding the owner hierarchy auth")
	return fs
}

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Main runs `edgectl tpm ARGS...` and returns the exit code: 0 done,
// 1 failed, 2 bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{ctx: ctx, out: stdout, errw: stderr}
	global := c.flags("edgectl tpm")
	global.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	err := c.run(global.Args())
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "edgectl tpm: %s\n\n%s", ue.msg, usage)
		return 2
	}
	msg := err.Error()
	var fe *fault.Error
	if errors.As(err, &fe) {
		msg = fe.Msg
	}
	fmt.Fprintf(stderr, "edgectl tpm: %s\n", msg)
	return 1
}

func (c *cli) run(args []string) error {
	if len(args) == 0 {
		return usagef("no command")
	}
	cmd, rest := args[0], args[1:]
	if cmd == "status" {
		return c.status(rest)
	}
	if cmd == "ek" && (len(rest) == 0 || strings.HasPrefix(rest[0], "-")) {
		return c.ekID(rest)
	}
	if len(rest) == 0 {
		return usagef("%s needs a subcommand", cmd)
	}
	sub, rest := rest[0], rest[1:]
	switch cmd + " " + sub {
	case "ek show":
		return c.ekShow(rest, false)
	case "ek verify":
		return c.ekShow(rest, true)
	case "idevid create":
		return c.create(rest, "idevid")
	case "ldevid create":
		return c.create(rest, "ldevid")
	case "idevid show", "ldevid show":
		return c.show(rest, cmd)
	case "idevid export", "ldevid export":
		return c.export(rest, cmd)
	case "idevid csr", "ldevid csr":
		return c.csr(rest, cmd)
	case "idevid set-cert":
		return c.setCert(rest)
	case "ldevid enroll":
		return c.enroll(rest)
	case "ldevid link":
		return c.link(rest)
	}
	return usagef("unknown command %q", cmd+" "+sub)
}

func (c *cli) parse(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	// Flags may follow positional arguments (set-cert FILE --force).
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != positional {
		return nil, usagef("%s takes %d argument(s), got %d: %s", fs.Name(), positional, len(pos), strings.Join(pos, " "))
	}
	return pos, nil
}

// open connects to the TPM with the hierarchy auths read from their files.
func (c *cli) open() (*TPM, error) {
	cfg := Config{Device: c.device, Address: c.addr, Fixes: &CLIFixes}
	if c.device != "" && c.addr != "" {
		return nil, usagef("--device and --address both given; pick one")
	}
	var err error
	if cfg.EndorsementAuth, err = readSecret(c.ehFile, "--endorsement-auth-file"); err != nil {
		return nil, err
	}
	if cfg.OwnerAuth, err = readSecret(c.ohFile, "--owner-auth-file"); err != nil {
		return nil, err
	}
	return Open(c.ctx, cfg)
}

// readSecret reads an auth value or PIN from a file, without its final
// newline; the value never appears in messages.
func readSecret(path, flagName string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "%s %s: %v", flagName, path, errors.Unwrap(err))
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

func (c *cli) status(args []string) error {
	fs := c.flags("status")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := t.Status(c.ctx)
	if err != nil {
		return err
	}
	yn := map[bool]string{true: "present", false: "absent"}
	fmt.Fprintf(c.out, "tpm: %s\nmanufacturer: %s\n", t.Where(), st.Manufacturer)
	fmt.Fprintf(c.out, "lockout: %v (failures %d of %d, recovery %ds)\n", st.InLockout, st.LockoutCounter, st.MaxAuthFail, st.LockoutRecovery)
	fmt.Fprintf(c.out, "ek 0x81010001: %s\nsrk 0x81000001: %s\nidevid 0x81020000: %s\nidevid-cert nv 0x01c90000: %s\nldevid 0x81000002: %s\n",
		yn[st.EK], yn[st.SRK], yn[st.IDevID], yn[st.IDevIDCert], yn[st.LDevID])
	return nil
}

func (c *cli) ekShow(args []string, verify bool) error {
	fs := c.flags("ek")
	algS := fs.String("alg", "rsa", "rsa or ecc")
	caFile := fs.String("ca", "", "the maker's CA bundle (PEM)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	kind, err := ParseEKKind(*algS)
	if err != nil {
		return usagef("%s", fault.Message(err))
	}
	var bundle []byte
	if verify {
		if *caFile == "" {
			return usagef("ek verify needs --ca FILE, the TPM maker's CA bundle")
		}
		if bundle, err = os.ReadFile(*caFile); err != nil {
			return fault.Wrap(fault.InvalidArgs, err, "--ca %s: %v", *caFile, errors.Unwrap(err))
		}
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	ek, idx, err := t.ReadEKCert(c.ctx, kind)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "nv: 0x%08x\nsubject: %s\nissuer: %s\nserial: %s\nnot-after: %s\ntpm-manufacturer: %s\ntpm-model: %s\ntpm-version: %s\n",
		uint32(idx), ek.Cert.Subject, ek.Cert.Issuer, ek.Cert.SerialNumber, ek.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), ek.Manufacturer, ek.Model, ek.Version)
	if !verify {
		return nil
	}
	chains, err := ek.Verify(bundle, timeNow())
	if err != nil {
		return err
	}
	pub, err := t.EKPublic(c.ctx, kind, ek.Cert.PublicKey)
	if err != nil {
		return err
	}
	if !samePublic(pub, ek.Cert.PublicKey) {
		return fault.New(fault.NotAuthorized, "the EK certificate is valid but certifies another key than this TPM's EK: it does not belong to this TPM")
	}
	fmt.Fprintf(c.out, "verified: chain of %d to %q; the certificate's key is this TPM's EK\n", len(chains[0]), chains[0][len(chains[0])-1].Subject.String())
	return nil
}

func (c *cli) create(args []string, which string) error {
	fs := c.flags(which + " create")
	algS := fs.String("alg", "ecc", "ecc (P-256) or rsa (2048)")
	force := fs.Bool("force", false, "replace an existing key")
	blobs := fs.String("blobs", DefaultBlobDir, "directory for the LDevID's key blobs (ldevid only)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	alg, err := ParseKeyAlg(*algS)
	if err != nil {
		return usagef("%s", fault.Message(err))
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	var id *Identity
	var created bool
	if which == "idevid" {
		id, created, err = t.CreateIDevID(c.ctx, alg, *force)
	} else {
		id, created, err = t.CreateLDevID(c.ctx, alg, *force, *blobs)
	}
	if err != nil {
		return err
	}
	state := "created"
	if !created {
		state = "exists (left as it is; --force replaces it)"
		if id.Alg != alg {
			state = fmt.Sprintf("exists as %s, not %s (left as it is; --force replaces it)", id.Alg, alg)
		}
	}
	fmt.Fprintf(c.out, "%s 0x%08x: %s\n", which, uint32(id.Handle), state)
	fmt.Fprintf(c.out, "public-key-sha256: %s\n", fingerprint(id))
	return nil
}

func fingerprint(id *Identity) string {
	der, err := x509.MarshalPKIXPublicKey(id.Public)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func (c *cli) identity(t *TPM, which string) (*Identity, error) {
	if which == "idevid" {
		return t.IDevID(c.ctx)
	}
	return t.LDevID(c.ctx)
}

func (c *cli) show(args []string, which string) error {
	fs := c.flags(which + " show")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	id, err := c.identity(t, which)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "%s 0x%08x: %s\npublic-key-sha256: %s\n", which, uint32(id.Handle), id.Alg, fingerprint(id))
	if which == "idevid" {
		cert, err := t.IDevIDCert(c.ctx)
		switch {
		case fault.Is(err, fault.NotFound):
			fmt.Fprintf(c.out, "certificate: none in NV 0x01c90000\n")
		case err != nil:
			return err
		default:
			fmt.Fprintf(c.out, "certificate: subject %q, issuer %q, not after %s\n", cert.Subject.String(), cert.Issuer.String(), cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		}
	}
	return nil
}

func (c *cli) export(args []string, which string) error {
	fs := c.flags(which + " export")
	certOut := fs.Bool("cert", false, "export the certificate instead of the public key (idevid)")
	out := fs.String("out", "", "write to FILE instead of standard output")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if *certOut && which != "idevid" {
		return usagef("--cert is for the IDevID; the LDevID's certificate is with the Certificates service")
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	var blk *pem.Block
	if *certOut {
		cert, err := t.IDevIDCert(c.ctx)
		if err != nil {
			return err
		}
		blk = &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}
	} else {
		id, err := c.identity(t, which)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(id.Public)
		if err != nil {
			return err
		}
		blk = &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	}
	return c.write(*out, pem.EncodeToMemory(blk))
}

func (c *cli) write(path string, data []byte) error {
	if path == "" {
		_, err := c.out.Write(data)
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fault.Wrap(fault.Failed, err, "write %s: %v", path, err)
	}
	return nil
}

func subjectFlags(fs *flag.FlagSet) *CSRSubject {
	s := &CSRSubject{}
	fs.StringVar(&s.CommonName, "cn", "", "subject common name (the device id)")
	fs.StringVar(&s.SerialNumber, "serial", "", "subject serialNumber (802.1AR device serial)")
	fs.StringVar(&s.Organization, "org", "", "subject organization")
	return s
}

func (c *cli) csr(args []string, which string) error {
	fs := c.flags(which + " csr")
	subj := subjectFlags(fs)
	out := fs.String("out", "", "write the PEM CSR to FILE instead of standard output")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if subj.CommonName == "" {
		return usagef("%s csr needs --cn, e.g. the device id", which)
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	h := IDevIDHandle
	if which == "ldevid" {
		h = LDevIDHandle
	}
	s, err := t.Signer(c.ctx, h)
	if err != nil {
		return err
	}
	der, err := CreateCSR(s, *subj)
	if err != nil {
		return err
	}
	return c.write(*out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func (c *cli) setCert(args []string) error {
	fs := c.flags("idevid set-cert")
	force := fs.Bool("force", false, "replace a certificate already in NV 0x01C90000")
	pos, err := c.parse(fs, args, 1)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "read %s: %v", pos[0], errors.Unwrap(err))
	}
	der := data
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return fault.New(fault.InvalidArgs, "%s holds a PEM %q, not a CERTIFICATE", pos[0], blk.Type)
		}
		der = blk.Bytes
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "%s is not an X.509 certificate (PEM or DER): %v", pos[0], err)
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	if err := t.SetIDevIDCert(c.ctx, cert, *force); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "idevid certificate stored in NV 0x01c90000 (%d bytes, subject %q)\n", len(cert.Raw), cert.Subject.String())
	return nil
}

func (c *cli) enroll(args []string) error {
	fs := c.flags("ldevid enroll")
	subj := subjectFlags(fs)
	url := fs.String("est", "", "EST base URL, https://HOST:PORT/.well-known/est")
	caFile := fs.String("est-ca", "", "PEM trust anchors for the EST server")
	label := fs.String("label", "", "EST CA label")
	out := fs.String("out", "", "write the issued chain (PEM) to FILE instead of standard output")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if *url == "" || *caFile == "" || subj.CommonName == "" {
		return usagef("ldevid enroll needs --est URL, --est-ca FILE and --cn")
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		return fault.Wrap(fault.InvalidArgs, err, "--est-ca %s: %v", *caFile, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fault.New(fault.InvalidArgs, "--est-ca %s holds no PEM certificate", *caFile)
	}
	t, err := c.open()
	if err != nil {
		return err
	}
	defer t.Close()
	chain, err := t.EnrollLDevID(c.ctx, EnrollOptions{URL: *url, Label: *label, TrustAnchors: pool, Subject: *subj})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, cert := range chain {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	return c.write(*out, buf.Bytes())
}

func (c *cli) link(args []string) error {
	fs := c.flags("ldevid link")
	opt := LinkOptions{}
	fs.StringVar(&opt.Store, "store", "", "tpm2-pkcs11 store directory")
	fs.StringVar(&opt.Token, "token", "", "token label")
	pinFile := fs.String("pin-file", "", "file holding the token's user PIN")
	fs.StringVar(&opt.KeyLabel, "key-label", "ldevid", "label of the linked key")
	fs.StringVar(&opt.BlobDir, "blobs", DefaultBlobDir, "directory of the LDevID's key blobs")
	fs.StringVar(&opt.TCTI, "tcti", "", "TCTI for tpm2_ptool (default: TPM2_PKCS11_TCTI, or device:/dev/tpmrm0)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if *pinFile == "" {
		return usagef("ldevid link needs --pin-file FILE")
	}
	pin, err := readSecret(*pinFile, "--pin-file")
	if err != nil {
		return err
	}
	opt.PIN = pin
	if opt.TCTI == "" && os.Getenv("TPM2_PKCS11_TCTI") == "" {
		switch {
		case c.addr != "":
			host, port, _ := strings.Cut(c.addr, ":")
			opt.TCTI = "swtpm:host=" + host + ",port=" + port
		case c.device != "":
			opt.TCTI = "device:" + c.device
		default:
			opt.TCTI = "device:" + DefaultDevice
		}
	}
	linked, err := LinkLDevID(c.ctx, opt)
	if err != nil {
		return err
	}
	if linked {
		fmt.Fprintf(c.out, "ldevid linked into token %q as %q\n", opt.Token, opt.KeyLabel)
	} else {
		fmt.Fprintf(c.out, "ldevid already linked into token %q as %q\n", opt.Token, opt.KeyLabel)
	}
	fmt.Fprintf(c.out, "preloaded key URI: pkcs11:token=%s;object=%s\n", opt.Token, opt.KeyLabel)
	return nil
}
