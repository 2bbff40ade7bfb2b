package mgmt

import (
	"net/http"
	"time"
)

func (s *Server) systemInfo(w http.ResponseWriter, r *http.Request, _ string) {
	writeJSON(w, http.StatusOK, systemInfoJSON(s.info))
}

func (s *Server) systemResources(w http.ResponseWriter, r *http.Request, _ string) {
	var res SystemResources
	var err error
	if s.info.Resources != nil {
		res, err = s.info.Resources(r.Context())
	} else {
		res, err = s.hostResources()
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.ProcessUptime == 0 {
		res.ProcessUptime = time.Since(s.started)
	}
	writeJSON(w, http.StatusOK, resourcesJSON(res))
}
