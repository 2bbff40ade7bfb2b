package workload

import (
	"context"
	"encoding/base64"
	"net/http"
)

// cryptReq is the body of encrypt (plaintext) and decrypt (ciphertext).
type cryptReq struct {
	Plaintext  *string `json:"plaintext"`
	Ciphertext *string `json:"ciphertext"`
	IV         *string `json:"initializationVector"`
}

type cryptFunc func(ctx context.Context, module, genID string, data, iv []byte) ([]byte, error)

// encrypt is POST /modules/{name}/genid/{genid}/encrypt.
func (h *routes) encrypt(w http.ResponseWriter, r *http.Request) error {
	return h.crypt(w, r, "encrypt", "plaintext", "ciphertext", func(req *cryptReq) *string { return req.Plaintext }, h.m.be.Encrypt)
}

// decrypt is POST /modules/{name}/genid/{genid}/decrypt.
func (h *routes) decrypt(w http.ResponseWriter, r *http.Request) error {
	return h.crypt(w, r, "decrypt", "ciphertext", "plaintext", func(req *cryptReq) *string { return req.Ciphertext }, h.m.be.Decrypt)
}

// crypt runs op (AES-256-GCM under the module's key for the path's
// generation id) over the body's base64 field in and answers it as out.
func (h *routes) crypt(w http.ResponseWriter, r *http.Request, op, in, out string, field func(*cryptReq) *string, run cryptFunc) error {
	var req cryptReq
	if err := readJSON(r, 1<<20, &req); err != nil {
		return err
	}
	text := field(&req)
	if text == nil || req.IV == nil {
		return refuse(http.StatusBadRequest, "request body needs %q and \"initializationVector\" (base64)", in)
	}
	data, err1 := base64.StdEncoding.DecodeString(*text)
	iv, err2 := base64.StdEncoding.DecodeString(*req.IV)
	if err1 != nil || err2 != nil {
		return refuse(http.StatusBadRequest, "%s and initializationVector must be base64", in)
	}
	if len(iv) == 0 {
		return refuse(http.StatusBadRequest, "initializationVector is empty")
	}
	result, err := run(r.Context(), h.module, r.PathValue("genid"), data, iv)
	if err != nil {
		return failed(op, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{out: base64.StdEncoding.EncodeToString(result)})
	return nil
}
