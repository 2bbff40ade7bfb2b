package mgmt

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
)

func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request, _ string) {
	ids, err := s.identities.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].ModuleID < ids[j].ModuleID })
	out := identityList{Identities: make([]identityJSON, 0, len(ids))}
	for _, id := range ids {
		out.Identities = append(out.Identities, identityToJSON(id))
	}
	writeJSON(w, http.StatusOK, out)
}

// createIdentity answers 200 (not 201), as aziot-edged does.
func (s *Server) createIdentity(w http.ResponseWriter, r *http.Request, _ string) {
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	spec, err := parseIdentitySpec(body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.identities.Create(r.Context(), spec.ModuleID, spec.ManagedBy)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if id.ManagedBy == "" {
		id.ManagedBy = spec.ManagedBy
	}
	writeJSON(w, http.StatusOK, identityToJSON(id))
}

// updateIdentity takes an optional body {generationId, managedBy}; only
// managedBy is used (aziot-edged ignores the body altogether).
func (s *Server) updateIdentity(w http.ResponseWriter, r *http.Request, name string) {
	body, err := readBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var upd struct {
		GenerationID string `json:"generationId"`
		ManagedBy    string `json:"managedBy"`
	}
	if body != nil {
		if err := decodeJSON(body, &upd); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	id, err := s.identities.Update(r.Context(), name, upd.ManagedBy)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, identityToJSON(id))
}

// deleteIdentity answers 404 for an identity this device does not have,
// as the swagger says (the Identity service's delete is idempotent).
func (s *Server) deleteIdentity(w http.ResponseWriter, r *http.Request, name string) {
	ids, err := s.identities.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !slices.ContainsFunc(ids, func(id Identity) bool { return id.ModuleID == name }) {
		s.fail(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("module identity %q not found", name)})
		return
	}
	if err := s.identities.Delete(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// reprovision answers 200 with no body, as aziot-edged does.
func (s *Server) reprovision(w http.ResponseWriter, r *http.Request, _ string) {
	if err := s.identities.Reprovision(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}
