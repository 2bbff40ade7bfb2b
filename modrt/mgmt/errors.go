package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/edgev2/edgev2/internal/fault"
)

// apiError is a failure with its HTTP status decided.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps a domain error to its HTTP status, as aziot-edged's
// Docker-backed runtime did: a missing module is 404, an existing one 409.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	switch fault.KindOf(err) {
	case fault.NotFound:
		return http.StatusNotFound
	case fault.AlreadyExists, fault.ReadOnly:
		return http.StatusConflict
	case fault.InvalidArgs:
		return http.StatusBadRequest
	case fault.NotAuthorized:
		return http.StatusForbidden
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers with an ErrorResponse. Internal failures get a generic
// message; their detail goes to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	var ae *apiError
	if !errors.As(err, &ae) {
		msg = fault.Message(err)
	}
	if status >= 500 {
		s.log.Error("management request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, errorResponse{Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"message":"internal error; the service log has the details"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
