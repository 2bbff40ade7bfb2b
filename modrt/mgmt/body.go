package mgmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// readBody reads a JSON request body of at most MaxBodySize bytes. An
// empty body is returned as nil.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &apiError{status: http.StatusUnsupportedMediaType, msg: "request body must be application/json, not " + ct}
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, msg: "request body is larger than the 1 MiB allowed"}
		}
		return nil, badRequest("read request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	return b, nil
}

// parseModuleSpec decodes a ModuleSpec body. A spec over modrt's cap is
// too large (413) rather than wrong (400).
func parseModuleSpec(body []byte) (*modspec.Spec, error) {
	if body == nil {
		return nil, badRequest("missing request body")
	}
	if len(body) > modspec.MaxSpecSize {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge,
			msg: "module spec is larger than the 256 KiB allowed"}
	}
	spec, err := modspec.ParseSpec(body)
	if err != nil {
		return nil, err // InvalidArgs: 400 with ParseSpec's message
	}
	return spec, nil
}

// decodeJSON decodes one JSON value into v, naming what is wrong with it.
// Unknown fields are ignored, as aziot-edged does.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("request body: unexpected data after the JSON value")
	}
	return nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "invalid JSON at byte " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error()
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "the body"
		}
		return field + " must be " + jsonKind(te.Type.Kind().String()) + ", not " + te.Value
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the JSON value is incomplete"
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch {
	case k == "string":
		return "a string"
	case k == "struct" || k == "map":
		return "an object"
	case k == "slice" || k == "array":
		return "an array"
	case k == "bool":
		return "a boolean"
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "a number"
	}
	return k
}

// parseIdentitySpec decodes the body of POST /identities.
func parseIdentitySpec(body []byte) (identitySpec, error) {
	if body == nil {
		return identitySpec{}, badRequest("missing request body")
	}
	var spec identitySpec
	if err := decodeJSON(body, &spec); err != nil {
		return identitySpec{}, err
	}
	if spec.ModuleID == "" {
		return identitySpec{}, badRequest("request body: moduleId is missing or empty")
	}
	if spec.ManagedBy == "" {
		spec.ManagedBy = "iotedge"
	}
	return spec, nil
}

// specBody reads and parses a request's module spec. With path set (the
// module the path names), a spec that names another module is refused.
func specBody(w http.ResponseWriter, r *http.Request, path string) ([]byte, *modspec.Spec, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	spec, err := parseModuleSpec(body)
	if err != nil {
		return nil, nil, err
	}
	if path != "" && spec.Name != path {
		return nil, nil, badRequest("the body names module %q but the path names %q", spec.Name, path)
	}
	return body, spec, nil
}
