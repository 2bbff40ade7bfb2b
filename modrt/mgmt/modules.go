package mgmt

import (
	"context"
	"net/http"
	"sort"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/ctrd"
)

func (s *Server) listModules(w http.ResponseWriter, r *http.Request, _ string) error {
	ctx := r.Context()
	sts, err := s.modules.List(ctx)
	if err != nil {
		return err
	}
	sort.Slice(sts, func(i, j int) bool { return sts[i].Name < sts[j].Name })
	out := moduleList{Modules: make([]moduleDetails, 0, len(sts))}
	for _, st := range sts {
		// The list has no specs; edgeAgent needs each module's settings.
		cur, spec, err := s.modules.Get(ctx, st.Name)
		switch {
		case fault.Is(err, fault.NotFound):
			continue // removed meanwhile
		case err != nil:
			s.log.Warn("module spec unavailable for the list", "module", st.Name, "err", err)
			cur, spec = st, nil
		}
		d, err := detailsJSON(cur, spec)
		if err != nil {
			return err
		}
		out.Modules = append(out.Modules, d)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getModule(w http.ResponseWriter, r *http.Request, name string) error {
	if err := moduleName(name); err != nil {
		return err
	}
	st, spec, err := s.modules.Get(r.Context(), name)
	if err != nil {
		return err
	}
	d, err := detailsJSON(st, spec)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// createModule creates but does not start, as aziot-edged: edgeAgent
// starts modules with a separate call.
func (s *Server) createModule(w http.ResponseWriter, r *http.Request, _ string) error {
	body, spec, err := specBody(w, r, "")
	if err != nil {
		return err
	}
	if err := s.modules.Create(r.Context(), spec.Name, body, false); err != nil {
		return err
	}
	d, err := specDetailsJSON(spec, s.statusAfter(r.Context(), spec.Name, false))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, d)
	return nil
}

// updateModule replaces a module with the new spec (starting it if
// ?start=true); the runtime's Update removes and creates it.
func (s *Server) updateModule(w http.ResponseWriter, r *http.Request, name string) error {
	if err := moduleName(name); err != nil {
		return err
	}
	start, err := queryBool(r.URL.Query(), "start")
	if err != nil {
		return err
	}
	body, spec, err := specBody(w, r, name)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if err := s.modules.Update(ctx, name, body, start); err != nil {
		return err
	}
	d, err := specDetailsJSON(spec, s.statusAfter(ctx, name, start))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// statusAfter is a module's status right after a create or update, as GET
// would show it; if the runtime cannot say, the status the call left it in.
func (s *Server) statusAfter(ctx context.Context, name string, started bool) moduleStatus {
	if st, _, err := s.modules.Get(ctx, name); err == nil {
		return statusJSON(st)
	}
	if started {
		return moduleStatus{RuntimeStatus: runtimeStatus{Status: statusRunning, Description: string(ctrd.StateRunning)}}
	}
	return moduleStatus{RuntimeStatus: runtimeStatus{Status: statusStopped, Description: string(ctrd.StateCreated)}}
}

func (s *Server) deleteModule(w http.ResponseWriter, r *http.Request, name string) error {
	if err := moduleName(name); err != nil {
		return err
	}
	if err := s.modules.Remove(r.Context(), name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) moduleAction(w http.ResponseWriter, r *http.Request, name, action string) error {
	if err := moduleName(name); err != nil {
		return err
	}
	var err error
	switch action {
	case "start":
		err = s.modules.Start(r.Context(), name)
	case "stop":
		err = s.modules.Stop(r.Context(), name)
	case "restart":
		err = s.modules.Restart(r.Context(), name)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// prepareUpdate readies the image of a coming update so the update
// itself does not wait for a pull with the module down.
func (s *Server) prepareUpdate(w http.ResponseWriter, r *http.Request, name string) error {
	if err := moduleName(name); err != nil {
		return err
	}
	_, spec, err := specBody(w, r, name)
	if err != nil {
		return err
	}
	if err := s.modules.Prepare(r.Context(), spec); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
