package mgmt

import (
	"bytes"
	"net/http"
	"strconv"
	"time"
)

func (s *Server) systemInfo(w http.ResponseWriter, r *http.Request, _ string) error {
	info := s.info
	if info.CurrentProvisioning != nil {
		p, err := info.CurrentProvisioning(r.Context())
		if err != nil {
			s.log.Warn("provisioning information unavailable for /systeminfo", "err", err)
		} else {
			info.Provisioning = p
		}
	}
	writeJSON(w, http.StatusOK, systemInfoJSON(info))
	return nil
}

func (s *Server) systemResources(w http.ResponseWriter, r *http.Request, _ string) error {
	var res SystemResources
	var err error
	if s.info.Resources != nil {
		res, err = s.info.Resources(r.Context())
	} else {
		res, err = s.hostResources()
	}
	if err != nil {
		return err
	}
	if res.ProcessUptime == 0 {
		res.ProcessUptime = time.Since(s.started)
	}
	writeJSON(w, http.StatusOK, resourcesJSON(res))
	return nil
}

// supportBundle answers the bundle as a zip, as aziot-edged does: built
// whole first (so a failure is still a clean 500), then sent with its length.
func (s *Server) supportBundle(w http.ResponseWriter, r *http.Request, _ string) error {
	if s.bundle == nil {
		return &apiError{status: http.StatusNotFound, msg: "not found: this server has no support bundle"}
	}
	q := r.URL.Query()
	var o BundleOptions
	if err := queryTimes(q, time.Now(), &o.Since, &o.Until); err != nil {
		return err
	}
	var err error
	if o.EdgeRuntimeOnly, err = queryBool(q, "edge_runtime_only"); err != nil {
		return err
	}
	o.IoTHubHostname = q.Get("iothub_hostname")
	var buf bytes.Buffer
	if err := s.bundle(r.Context(), o, &buf); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
	return nil
}
