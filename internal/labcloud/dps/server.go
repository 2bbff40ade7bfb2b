// Package dps is edgev2-labcloud's Device Provisioning Service: the DPS
// device runtime API (register, operation status) with real symmetric-key
// and X.509 attestation, assigning devices to the lab IoT Hub.
package dps

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/internal/labcloud/hub"
)

// MaxBodyBytes caps request bodies; DPS custom payloads are small.
const MaxBodyBytes = 64 << 10

// Registry is where assigned devices are created: the hub's registry.
type Registry interface {
	EnsureDevice(id string, auth hub.Authentication) (hub.Device, error)
}

// caTruster is a registry that authenticates certificateAuthority devices
// by chain: the CAs of X.509 enrollment groups are given to it, as an
// operator uploads and verifies a group's CA in the linked IoT Hub.
type caTruster interface {
	TrustCAs(cas []*x509.Certificate)
}

// Server is the lab DPS.
type Server struct {
	cfg         Config
	log         *slog.Logger
	dir         string
	registry    Registry
	enrollments []*enrollment

	mu            sync.Mutex
	registrations map[string]*Registration // lower-case registration id →
	operations    map[string]*operation
	requests      map[string]int         // per lower-case registration id, for throttle_first
	tpm           map[string]*tpmSession // per lower-case registration id: keys issued to its TPM
	issuer        Issuer                 // signs for credential policies (the EST CA)

	now func() time.Time
}

// Registration is the persisted state of one registration id.
type Registration struct {
	RegistrationID string    `json:"registrationId"`
	DeviceID       string    `json:"deviceId"`
	AssignedHub    string    `json:"assignedHub"`
	Created        time.Time `json:"created"`
	LastUpdated    time.Time `json:"lastUpdated"`
	Etag           string    `json:"etag"`
	Assignments    int       `json:"assignments"`
	Enrollment     string    `json:"enrollment"` // "individual:<id>" or "group:<id>"
}

// operation is one register request in flight.
type operation struct {
	id, registrationID string
	pollsLeft          int
	att                *attested
	payload            json.RawMessage
	csr                *csrRequest                  // the checked certificate request, if any
	result             *RegistrationOperationStatus // set once assigned
}

const stateFile = "registrations.json"

// NewServer loads the enrollments of cfg (reading certificate files) and
// the registration state in stateDir. cfg.AssignedHub must be set (the
// labcloud composes it from the hub). A nil registry creates no devices;
// a nil logger discards logs.
func NewServer(cfg Config, stateDir string, registry Registry, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.AssignedHub == "" {
		return nil, &ConfigError{Table: "dps", Key: "assigned_hub", Problem: "empty", Fix: "set the hub host name devices are assigned to"}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: logger, dir: stateDir, registry: registry,
		registrations: map[string]*Registration{}, operations: map[string]*operation{}, requests: map[string]int{}, tpm: map[string]*tpmSession{}, now: time.Now}
	for i, e := range cfg.Enrollments {
		le, err := loadEnrollment(e, i)
		if err != nil {
			return nil, err
		}
		s.enrollments = append(s.enrollments, le)
		if le.isGroup() && le.Attestation == AttestationX509 {
			if t, ok := registry.(caTruster); ok {
				t.TrustCAs(le.certs)
			}
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(data, &s.registrations); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(stateDir, stateFile), err)
		}
	}
	logger.Info("DPS ready", "id_scope", cfg.IDScope, "assigned_hub", cfg.AssignedHub, "enrollments", len(s.enrollments), "registrations", len(s.registrations), "state", stateDir)
	return s, nil
}

// IDScope is the id scope, the first segment of the device API paths.
func (s *Server) IDScope() string { return s.cfg.IDScope }

// Registration returns the state of a registration id that has been assigned.
func (s *Server) Registration(registrationID string) (Registration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.registrations[strings.ToLower(registrationID)]
	if !ok {
		return Registration{}, false
	}
	return *r, true
}

// Handler serves /{idScope}/registrations/{registrationId}/register and
// /{idScope}/registrations/{registrationId}/operations/{operationId}.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	e := s.handle(w, r, now)
	if e != nil {
		writeError(w, e, now)
		s.log.Info("DPS request refused", "method", r.Method, "path", r.URL.Path, "status", e.status, "code", e.code, "reason", e.message)
	}
}

// handle answers one request, or returns the error to send.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, now time.Time) *dpsError {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) < 4 || parts[1] != "registrations" || !(len(parts) == 4 && parts[3] == "register" || len(parts) == 5 && parts[3] == "operations") {
		return errorf(http.StatusNotFound, CodeNotFound, "not a DPS device API path; use /{idScope}/registrations/{registrationId}/register or .../operations/{operationId}")
	}
	scope, regID := parts[0], parts[2]
	if scope != s.cfg.IDScope {
		return errorf(http.StatusNotFound, CodeNotFound, "unknown id scope %q", scope)
	}
	if !ValidRegistrationID(regID) {
		return errorf(http.StatusBadRequest, CodeBadRequest, "registration id %q is invalid: up to 128 alphanumerics and - . _ :, not starting or ending with a special character", regID)
	}
	method := http.MethodPut
	if len(parts) == 5 {
		method = http.MethodGet
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		return errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s takes %s", r.URL.Path, method)
	}
	if v := r.URL.Query().Get("api-version"); !slices.Contains(APIVersions, v) {
		return errorf(http.StatusBadRequest, CodeBadAPIVersion, "api-version %q is not supported; use one of %s", v, strings.Join(APIVersions, ", "))
	}
	if e := s.throttle(regID); e != nil {
		return e
	}
	if len(parts) == 4 {
		in, e := readRegistration(r, regID)
		if e != nil {
			return e
		}
		req, e := parseCSR(in, r.URL.Query().Get("api-version"))
		if e != nil {
			return e
		}
		att, e := s.attest(r, regID, now, &in)
		if e != nil {
			return e
		}
		if req != nil && att.enr.CredentialPolicy != nil {
			if e := checkCSR(req, regID, att.enr.CredentialPolicy); e != nil {
				return e
			}
		} else {
			req = nil // as ADR: an enrollment without a credential policy issues nothing
		}
		return s.register(w, regID, att, in, req)
	}
	att, e := s.attest(r, regID, now, nil)
	if e != nil {
		return e
	}
	return s.operationStatus(w, regID, parts[4], att, now)
}

func (s *Server) throttle(regID string) *dpsError {
	if s.cfg.ThrottleFirst == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(regID)
	s.requests[key]++
	if s.requests[key] <= s.cfg.ThrottleFirst {
		e := errorf(http.StatusTooManyRequests, CodeThrottled, "Operations are being throttled for registration %q; retry after %d seconds", regID, s.cfg.RetryAfter)
		e.retryAfter = s.cfg.RetryAfter
		return e
	}
	return nil
}

// parseRegistration decodes a register body; registrationId must equal
// the path's, payload is any JSON value, tpm needs both keys.
func parseRegistration(body []byte, regID string) (DeviceRegistration, *dpsError) {
	var in DeviceRegistration
	if err := json.Unmarshal(body, &in); err != nil {
		return in, errorf(http.StatusBadRequest, CodeBadRequest, "the body is not a JSON DeviceRegistration: %v", err)
	}
	if !strings.EqualFold(in.RegistrationID, regID) {
		return in, errorf(http.StatusBadRequest, CodeRegistrationIDDiff, "registrationId %q in the body differs from %q in the path", in.RegistrationID, regID)
	}
	if in.TPM != nil && (in.TPM.EndorsementKey == "" || in.TPM.StorageRootKey == "") {
		return in, errorf(http.StatusBadRequest, CodeBadRequest, "tpm needs endorsementKey and storageRootKey")
	}
	if string(in.Payload) == "null" {
		in.Payload = nil
	}
	return in, nil
}

func readRegistration(r *http.Request, regID string) (DeviceRegistration, *dpsError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return DeviceRegistration{}, errorf(http.StatusBadRequest, CodeBadRequest, "reading the body: %v", err)
	}
	if len(body) > MaxBodyBytes {
		return DeviceRegistration{}, errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "the body is over %d bytes", MaxBodyBytes)
	}
	return parseRegistration(body, regID)
}

func (s *Server) register(w http.ResponseWriter, regID string, att *attested, in DeviceRegistration, req *csrRequest) *dpsError {
	op := &operation{id: newOperationID(), registrationID: regID, pollsLeft: s.cfg.AssigningPolls, att: att, payload: in.Payload, csr: req}
	s.mu.Lock()
	s.operations[op.id] = op
	s.mu.Unlock()
	w.Header().Set("Retry-After", fmt.Sprint(s.cfg.pollRetryAfter()))
	writeJSON(w, http.StatusAccepted, RegistrationOperationStatus{OperationID: op.id, Status: StatusAssigning})
	s.log.Info("DPS registration accepted", "registration_id", regID, "operation", op.id, "enrollment", enrollmentName(att.enr))
	return nil
}

func enrollmentName(e *enrollment) string {
	if e.isGroup() {
		return "group:" + e.GroupID
	}
	return "individual:" + e.RegistrationID
}

func (s *Server) operationStatus(w http.ResponseWriter, regID, opID string, att *attested, now time.Time) *dpsError {
	s.mu.Lock()
	defer s.mu.Unlock()
	op, ok := s.operations[opID]
	if !ok || !strings.EqualFold(op.registrationID, regID) {
		return errorf(http.StatusNotFound, CodeOperationNotFound, "operation %q of registration %q not found", opID, regID)
	}
	if op.result == nil && op.pollsLeft > 0 {
		op.pollsLeft--
		// Like DPS, a status poll while assigning carries the registration's
		// state (registrationId, status); the register answer does not.
		w.Header().Set("Retry-After", fmt.Sprint(s.cfg.pollRetryAfter()))
		writeJSON(w, http.StatusAccepted, RegistrationOperationStatus{OperationID: op.id, Status: StatusAssigning,
			RegistrationState: &DeviceRegistrationState{RegistrationID: op.registrationID, Status: StatusAssigning}})
		return nil
	}
	if op.result == nil {
		res, err := s.assign(op, now)
		if err != nil {
			s.log.Error("DPS assignment failed", "registration_id", regID, "err", err)
			return errorf(http.StatusInternalServerError, CodeInternal, "assignment failed; the labcloud log has the details")
		}
		op.result = res
	}
	writeJSON(w, http.StatusOK, op.result)
	return nil
}

// assign creates or updates the device in the hub and records the
// registration; s.mu held.
func (s *Server) assign(op *operation, now time.Time) (*RegistrationOperationStatus, error) {
	att := op.att
	var tpmResult *TpmRegistrationResult
	if att.tpm {
		var err error
		if tpmResult, err = s.assignTPM(op.registrationID, att); err != nil {
			return nil, fmt.Errorf("issue the hub key for TPM %q: %w", op.registrationID, err)
		}
	}
	auth, keep := att.auth, false
	st := &DeviceRegistrationState{}
	if op.csr != nil {
		if err := s.issue(op, st); err != nil {
			return nil, fmt.Errorf("issue the operational certificate of %q: %w", op.registrationID, err)
		}
		// The hub knows the device by its issued certificate's chain; the
		// onboarding credential (SAS key, DPS certificate) no longer opens
		// it unless the policy keeps it.
		if keep = att.enr.CredentialPolicy.OnboardingCredential == "keep"; !keep {
			auth = hub.Authentication{Type: hub.AuthCertificateAuthority}
		}
	}
	if cr, ok := s.registry.(chainRegistry); ok && keep {
		if _, err := cr.EnsureDeviceWithChain(att.deviceID, auth); err != nil {
			return nil, fmt.Errorf("create device %q in the hub: %w", att.deviceID, err)
		}
	} else if s.registry != nil {
		if _, err := s.registry.EnsureDevice(att.deviceID, auth); err != nil {
			return nil, fmt.Errorf("create device %q in the hub: %w", att.deviceID, err)
		}
	}
	key := strings.ToLower(op.registrationID)
	prev := s.registrations[key]
	rec := &Registration{RegistrationID: op.registrationID, DeviceID: att.deviceID, AssignedHub: s.cfg.AssignedHub,
		Created: now, LastUpdated: now, Enrollment: enrollmentName(att.enr), Assignments: 1}
	substatus := SubstatusInitialAssignment
	if prev != nil {
		rec.Created, rec.Assignments = prev.Created, prev.Assignments+1
		substatus = SubstatusReprovisioned
	}
	rec.Etag = base64.StdEncoding.EncodeToString([]byte(`"` + newUUID() + `"`))
	s.registrations[key] = rec
	data, err := json.MarshalIndent(s.registrations, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(s.dir, stateFile), data, 0o600)
	}
	if err != nil {
		if prev != nil {
			s.registrations[key] = prev
		} else {
			delete(s.registrations, key)
		}
		return nil, fmt.Errorf("save registration state: %w", err)
	}
	s.log.Info("DPS device assigned", "registration_id", op.registrationID, "device_id", att.deviceID, "hub", s.cfg.AssignedHub, "substatus", substatus)
	st.RegistrationID = op.registrationID
	st.CreatedDateTimeUtc = dpsTime(rec.Created)
	st.AssignedHub = rec.AssignedHub
	st.DeviceID = rec.DeviceID
	st.Status = StatusAssigned
	st.Substatus = substatus
	st.LastUpdatedDateTimeUtc = dpsTime(rec.LastUpdated)
	st.Etag = rec.Etag
	st.Payload = op.payload
	st.TPM = tpmResult
	return &RegistrationOperationStatus{OperationID: op.id, Status: StatusAssigned, RegistrationState: st}, nil
}
