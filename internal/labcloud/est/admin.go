package est

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/atomicfile"
)

// AdminTokenFile, in the EST state directory (0600), holds the bearer
// token of the admin endpoint; whoever can read the state can revoke.
const AdminTokenFile = "admin-token"

// AdminRevokePath revokes the serial (hex) in the POST body.
const AdminRevokePath = "/admin/revoke"

func loadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, AdminTokenFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		data = []byte(hex.EncodeToString(b))
		if err = atomicfile.Create(path, data, 0o600); errors.Is(err, os.ErrExist) {
			data, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	if len(tok) < 32 {
		return "", errors.New(path + " holds no usable token")
	}
	return tok, nil
}

// serveRevoke is the authenticated admin verb behind `edgev2-labcloud revoke`.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	rs := &responder{w: w, log: s.log, r: r, op: "admin-revoke"}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rs.fail(errorf(http.StatusMethodNotAllowed, "revoke takes POST"))
		return
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g, want := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.adminToken))
	if !ok || subtle.ConstantTimeCompare(g[:], want[:]) != 1 {
		rs.fail(errorf(http.StatusUnauthorized, "the admin token (%s in the EST state directory) is required", AdminTokenFile))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 256))
	if err != nil {
		rs.fail(errorf(http.StatusBadRequest, "cannot read the request body"))
		return
	}
	text := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(string(body))), "0x")
	text = strings.ReplaceAll(text, ":", "")
	serial, ok := new(big.Int).SetString(text, 16)
	if !ok || serial.Sign() <= 0 {
		rs.fail(errorf(http.StatusBadRequest, "the body must be a certificate serial number in hex"))
		return
	}
	if err := s.Revoke(serial); err != nil {
		if fault.Is(err, fault.NotFound) {
			rs.fail(errorf(http.StatusNotFound, "%s", fault.Message(err)))
			return
		}
		rs.internal(err)
		return
	}
	rs.ok(http.StatusOK, "text/plain; charset=utf-8", []byte("revoked "+serial.Text(16)+"\n"), "serial", serial.Text(16))
}
