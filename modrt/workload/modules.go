package workload

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/mgmt"
)

// listModules is GET /modules. The list aziot-edged serves here is every
// module's ModuleDetails, settings and env included. A module must learn
// nothing of other modules (DESIGN "Threat model"), so it sees its own
// entry only; edgeAgent lists all modules on the management socket.
func (h *routes) listModules(w http.ResponseWriter, r *http.Request) error {
	list := struct {
		Modules []json.RawMessage `json:"modules"`
	}{Modules: []json.RawMessage{}}
	st, spec, err := h.m.be.Module(r.Context(), h.module)
	switch {
	case fault.Is(err, fault.NotFound):
	case err != nil:
		return failed("module list", err)
	default:
		d, err := mgmt.ModuleDetailsJSON(st, spec)
		if err != nil {
			// Not the caller's to read: a 500 with the generic message.
			return failed("module list", internal{err})
		}
		list.Modules = append(list.Modules, d)
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// internal hides err's kind and message from the caller (500).
type internal struct{ error }

// certificateBundle answers GET /trust-bundle and /manifest-trust-bundle:
// the PEM that get returns, as {"certificate": ...}.
func certificateBundle(get func(context.Context) (string, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		pemText, err := get(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"certificate": pemText})
		return nil
	}
}
