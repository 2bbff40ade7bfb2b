package tpm

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runTPM runs edgectl tpm against sw and returns its output and exit code.
func runTPM(t *testing.T, sw *testenv.Swtpm, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errw bytes.Buffer
	code = Main(ctxT(t), append([]string{"--address", sw.Addr}, args...), &out, &errw)
	return out.String(), errw.String(), code
}

// mustTPM is runTPM that fails the test on a non-zero exit.
func mustTPM(t *testing.T, sw *testenv.Swtpm, args ...string) string {
	t.Helper()
	out, errw, code := runTPM(t, sw, args...)
	if code != 0 {
		t.Fatalf("edgectl tpm %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errw)
	}
	return out
}

// openTPM connects to sw directly; Close it before running Main again
// (swtpm serves one connection at a time).
func openTPM(t *testing.T, sw *testenv.Swtpm, cfg Config) *TPM {
	t.Helper()
	cfg.Address = sw.Addr
	tp, err := Open(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// factoryCA is the device maker's CA that certifies IDevIDs.
type factoryCA struct {
	*testpki.CA
	file string // PEM
}

func newFactoryCA(t *testing.T, cn string) *factoryCA {
	t.Helper()
	ca := testpki.NewCA(t, cn)
	return &factoryCA{CA: ca, file: testpki.WritePEM(t, filepath.Join(t.TempDir(), "factory-ca.pem"), ca.Cert)}
}

// certify signs a PEM CSR as the factory does for an IDevID (802.1AR:
// notAfter 99991231235959Z) and returns the PEM certificate's path.
func (ca *factoryCA) certify(t *testing.T, csrPEM string) string {
	t.Helper()
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil {
		t.Fatalf("not a PEM CSR: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature made in the TPM does not verify: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      csr.Subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cert := testpki.Sign(t, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	return testpki.WritePEM(t, filepath.Join(t.TempDir(), "cert.pem"), cert)
}

// setDictionaryAttack sends TPM2_DictionaryAttackParameters (go-tpm has
// no wrapper) with the empty lockout auth.
func setDictionaryAttack(t *testing.T, tp *TPM, maxTries, recovery, lockoutRecovery uint32) {
	t.Helper()
	var cmd bytes.Buffer
	w := func(v any) { binary.Write(&cmd, binary.BigEndian, v) }
	w(uint16(0x8002)) // TPM_ST_SESSIONS
	w(uint32(0))      // size, patched below
	w(uint32(0x13A))  // TPM_CC_DictionaryAttackParameters
	w(uint32(0x4000000A))
	w(uint32(9)) // authorization area: TPM_RS_PW, empty nonce, attrs 0, empty hmac
	w(uint32(0x40000009))
	w(uint16(0))
	w(uint8(0))
	w(uint16(0))
	w(maxTries)
	w(recovery)
	w(lockoutRecovery)
	b := cmd.Bytes()
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	tp.mu.Lock()
	rsp, err := tp.t.Send(b)
	tp.mu.Unlock()
	if err != nil {
		t.Fatalf("TPM2_DictionaryAttackParameters: %v", err)
	}
	if len(rsp) < 10 || binary.BigEndian.Uint32(rsp[6:10]) != 0 {
		t.Fatalf("TPM2_DictionaryAttackParameters answered %x", rsp)
	}
}
