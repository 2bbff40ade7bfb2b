package workload

import (
	"encoding/base64"
	"net/http"
)

// sign is POST /modules/{name}/genid/{genid}/sign: HMAC-SHA256 with the
// module's primary or secondary key.
func (h *routes) sign(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		KeyID string `json:"keyId"`
		Algo  string `json:"algo"`
		Data  string `json:"data"`
	}
	if err := readJSON(r, 1<<20, &req); err != nil {
		return err
	}
	if req.Algo != "HMACSHA256" {
		return refuse(http.StatusBadRequest, "algo must be HMACSHA256, not %q", req.Algo)
	}
	if req.KeyID != "primary" && req.KeyID != "secondary" {
		return refuse(http.StatusBadRequest, "keyId must be primary or secondary, not %q", req.KeyID)
	}
	data, err := base64.StdEncoding.DecodeString(req.Data)
	if err != nil {
		return refuse(http.StatusBadRequest, "data is not base64")
	}
	digest, err := h.m.be.SignAsModule(r.Context(), h.module, req.KeyID, data)
	if err != nil {
		return failed("sign", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"digest": base64.StdEncoding.EncodeToString(digest)})
	return nil
}
