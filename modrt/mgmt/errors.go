package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/edgev2/edgev2/fault"
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

// statusOf is the HTTP status of err: its own when the handler decided it,
// else that of its fault kind (fault.HTTPStatus, shared with the workload API).
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return fault.HTTPStatus(err)
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
