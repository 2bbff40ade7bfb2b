package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/edgev2/edgev2/fault"
)

// requestError is a refusal of the request itself (bad input, a caller
// that may not ask), answered with its own status and message.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &requestError{status: status, msg: fmt.Sprintf(format, args...)}
}

// backendError marks a failure of the backend; op names it in the log.
type backendError struct {
	op  string
	err error
}

func (e *backendError) Error() string { return e.op + ": " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// failed wraps a backend failure of op, to be logged when answered.
func failed(op string, err error) error { return &backendError{op: op, err: err} }

// errorBody is the edgelet swagger's ErrorResponse.
type errorBody struct {
	Message string `json:"message"`
}

// writeError is the one error path: a requestError answers with its status;
// anything else with the status of its fault kind and its caller-safe
// message, a backend failure logged first (a warning; a refusal a debug line).
func writeError(w http.ResponseWriter, log *slog.Logger, module string, err error) {
	var re *requestError
	if errors.As(err, &re) {
		writeJSON(w, re.status, errorBody{Message: re.msg})
		return
	}
	var be *backendError
	if errors.As(err, &be) {
		// A service's refusal of the module's request (its input, its
		// authority) is a debug line, as the D-Bus adapters log them: the
		// module decides how many it causes, and as warnings they would
		// fill modrtd's journal until journald suppressed its lines.
		if k := fault.KindOf(be.err); k == fault.Failed || k == fault.Unavailable {
			log.Warn("workload "+be.op+" failed", "module", module, "err", be.err)
		} else {
			log.Debug("workload "+be.op+" refused", "module", module, "err", be.err)
		}
	}
	writeJSON(w, fault.HTTPStatus(err), errorBody{Message: fault.Message(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
