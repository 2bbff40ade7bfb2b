package mgmt

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
)

func (s *Server) listIdentities(w http.ResponseWriter, r *http.Request, _ string) error {
	ids, err := s.identities.List(r.Context())
	if err != nil {
		return err
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].ModuleID < ids[j].ModuleID })
	out := identityList{Identities: make([]identityJSON, 0, len(ids))}
	for _, id := range ids {
		out.Identities = append(out.Identities, identityToJSON(id))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// createIdentity answers 200 (not 201), as aziot-edged does.
func (s *Server) createIdentity(w http.ResponseWriter, r *http.Request, _ string) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	spec, err := parseIdentitySpec(body)
	if err != nil {
		return err
	}
	id, err := s.identities.Create(r.Context(), spec.ModuleID, spec.ManagedBy)
	if err != nil {
		return err
	}
	if id.ManagedBy == "" {
		id.ManagedBy = spec.ManagedBy
	}
	writeJSON(w, http.StatusOK, identityToJSON(id))
	return nil
}

// updateIdentity takes an optional body {generationId, managedBy}; only
// managedBy is used (aziot-edged ignores the body altogether).
func (s *Server) updateIdentity(w http.ResponseWriter, r *http.Request, name string) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var upd struct {
		GenerationID string `json:"generationId"`
		ManagedBy    string `json:"managedBy"`
	}
	if body != nil {
		if err := decodeJSON(body, &upd); err != nil {
			return err
		}
	}
	id, err := s.identities.Update(r.Context(), name, upd.ManagedBy)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, identityToJSON(id))
	return nil
}

// deleteIdentity answers 404 for an identity this device does not have,
// as the swagger says (the Identity service's delete is idempotent).
func (s *Server) deleteIdentity(w http.ResponseWriter, r *http.Request, name string) error {
	ids, err := s.identities.List(r.Context())
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(ids, func(id Identity) bool { return id.ModuleID == name }) {
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("module identity %q not found", name)}
	}
	if err := s.identities.Delete(r.Context(), name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// reprovision answers 200 with no body, as aziot-edged does.
func (s *Server) reprovision(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := s.identities.Reprovision(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
