// Package hub is edgev2-labcloud's IoT Hub: the identity registry (devices
// and modules, with IoT Hub's REST shapes, etags and errors) and the HTTPS
// device-to-cloud endpoint, authorised by real SAS tokens and X.509 thumbprints.
package hub

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// PathPrefix is where the hub's REST API lives.
const PathPrefix = "/devices/"

// Body limits: IoT Hub's 256 KiB device-to-cloud message, and registry bodies.
const (
	MaxMessageBytes  = 256 << 10
	maxRegistryBytes = 64 << 10
)

// apiVersions are the api-version values accepted, the ones the Azure
// service and device SDKs and aziot-identityd send.
var apiVersions = map[string]bool{
	"2016-11-14": true, "2017-06-30": true, "2017-11-08-preview": true, "2018-06-30": true,
	"2018-08-30-preview": true, "2019-03-30": true, "2019-07-01-preview": true, "2019-10-01": true,
	"2020-03-13": true, "2020-05-31-preview": true, "2020-06-30": true, "2020-09-30": true,
	"2021-04-12": true, "2021-06-30": true, "2021-11-30": true,
}

// Server is the lab IoT Hub.
type Server struct {
	cfg       Config
	log       *slog.Logger
	dir       string
	policyKey []byte // nil: no service policy

	mu       sync.Mutex
	reg      *registry
	messages map[string][][]byte // "device/module" → accepted bodies
	cas      *x509.CertPool      // verified CAs of certificateAuthority devices (nil: none)

	now func() time.Time
}

// NewServer opens (or creates) the registry in stateDir, adds the
// configured devices that are not there yet, and returns the hub. A nil
// logger discards logs. cfg.Hostname must be set (the labcloud command
// defaults it to the bare name it serves at on port 443).
func NewServer(cfg Config, stateDir string, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Hostname == "" {
		return nil, &ConfigError{Table: "hub", Key: "hostname", Problem: "empty", Fix: "set the host name devices use for the hub"}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	reg, err := loadRegistry(stateDir)
	if err != nil {
		return nil, fmt.Errorf("open hub registry: %w", err)
	}
	s := &Server{cfg: cfg, log: logger, dir: stateDir, reg: reg, messages: map[string][][]byte{}, now: time.Now}
	if cfg.ServicePolicyKey != "" {
		s.policyKey, _ = DecodeKey(cfg.ServicePolicyKey)
	}
	for _, d := range cfg.Devices {
		if _, ok := reg.Devices[d.DeviceID]; ok {
			continue
		}
		if _, err := s.putDevice(Device{DeviceID: d.DeviceID, Authentication: d.authentication(), Capabilities: Capabilities{IotEdge: d.EdgeEnabled}}, "", false); err != nil {
			return nil, fmt.Errorf("hub device %q: %w", d.DeviceID, err)
		}
	}
	logger.Info("IoT Hub ready", "hostname", cfg.Hostname, "devices", len(reg.Devices), "state", stateDir, "service_policy", s.policyKey != nil)
	return s, nil
}

// Hostname is the hub's host name, as devices and SAS resources use it.
func (s *Server) Hostname() string { return s.cfg.Hostname }

// Device returns a copy of a registered device.
func (s *Server) Device(id string) (Device, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.reg.Devices[id]
	if !ok {
		return Device{}, false
	}
	return d.Device, true
}

// Module returns a copy of a registered module.
func (s *Server) Module(deviceID, moduleID string) (Module, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.reg.Devices[deviceID]
	if !ok {
		return Module{}, false
	}
	m, ok := d.Modules[moduleID]
	if !ok {
		return Module{}, false
	}
	return *m, true
}

// AcceptedMessages counts the device-to-cloud messages accepted from a
// module (moduleID "" : from the device itself).
func (s *Server) AcceptedMessages(deviceID, moduleID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages[deviceID+"/"+moduleID])
}

// Messages returns the bodies of the accepted messages, oldest first.
func (s *Server) Messages(deviceID, moduleID string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.messages[deviceID+"/"+moduleID]...)
}

// AddDevice registers (or replaces the credentials of) a device, as
// [[hub.devices]] does.
func (s *Server) AddDevice(d DeviceConfig) (Device, error) {
	if err := (Config{Devices: []DeviceConfig{d}}).Validate(); err != nil {
		return Device{}, err
	}
	return s.EnsureDevice(d.DeviceID, d.authentication())
}

// EnsureDevice creates the device with auth or, when it exists, replaces
// its authentication (new etag, same generationId). DPS calls it on
// assignment.
func (s *Server) EnsureDevice(id string, auth Authentication) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dev := Device{DeviceID: id, Authentication: auth}
	if old, ok := s.reg.Devices[id]; ok {
		dev.Capabilities = old.Device.Capabilities
		old.ChainToo = false // saved by putDevice
		return s.putDevice(dev, "*", true)
	}
	return s.putDevice(dev, "", false)
}

// EnsureDeviceWithChain is EnsureDevice for a device DPS issued an
// operational certificate under a policy that keeps the onboarding
// credential: auth stays its mechanism, and a certificate chaining to a
// verified CA whose CN is the device id is accepted too.
func (s *Server) EnsureDeviceWithChain(id string, auth Authentication) (Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dev := Device{DeviceID: id, Authentication: auth}
	var d Device
	var err error
	if old, ok := s.reg.Devices[id]; ok {
		dev.Capabilities = old.Device.Capabilities
		d, err = s.putDevice(dev, "*", true)
	} else {
		d, err = s.putDevice(dev, "", false)
	}
	if err != nil {
		return d, err
	}
	s.reg.Devices[id].ChainToo = true
	return d, s.reg.save(s.dir)
}

// errPut carries an IoT Hub error out of putDevice/putModule.
type errPut struct {
	status     int
	code, text string
}

func (e *errPut) Error() string { return e.code + ": " + e.text }

// putDevice creates or (with ifMatch) updates a device; s.mu held (or
// during NewServer). ifMatch "" with update false: create only.
func (s *Server) putDevice(in Device, ifMatch string, update bool) (Device, error) {
	if !ValidID(in.DeviceID) {
		return Device{}, &errPut{http.StatusBadRequest, codeArgumentInvalid, fmt.Sprintf("DeviceId %q is invalid", in.DeviceID)}
	}
	now := s.now()
	rec, exists := s.reg.Devices[in.DeviceID]
	var old *Authentication
	if exists {
		old = &rec.Device.Authentication
	}
	if p := normalizeAuth(&in.Authentication, old); p != "" {
		return Device{}, &errPut{http.StatusBadRequest, codeArgumentInvalid, p}
	}
	switch in.Status {
	case "":
		in.Status = "enabled"
	case "enabled", "disabled":
	default:
		return Device{}, &errPut{http.StatusBadRequest, codeArgumentInvalid, fmt.Sprintf("status %q is not enabled or disabled", in.Status)}
	}
	if !update {
		if exists {
			return Device{}, &errPut{http.StatusConflict, codeDeviceExists, fmt.Sprintf("A device with ID '%s' is already registered.", in.DeviceID)}
		}
		rec = &deviceRec{Modules: map[string]*Module{}}
		rec.Device = Device{DeviceID: in.DeviceID, GenerationID: s.reg.nextGenerationID(now), ConnectionState: "Disconnected",
			ConnectionStateUpdatedTime: neverTime, StatusUpdatedTime: neverTime, LastActivityTime: neverTime}
	} else {
		if !exists {
			return Device{}, &errPut{http.StatusNotFound, codeDeviceNotFound, in.DeviceID}
		}
		if !etagMatches(ifMatch, rec.Device.Etag) {
			return Device{}, &errPut{http.StatusPreconditionFailed, codePrecondition, "PreconditionFailed, ETag may be invalid."}
		}
	}
	d := rec.Device
	if d.Status != in.Status && exists {
		d.StatusUpdatedTime = hubTime(now)
	}
	d.Status, d.StatusReason = in.Status, in.StatusReason
	d.Authentication, d.Capabilities = in.Authentication, in.Capabilities
	d.Etag = s.reg.nextEtag()
	prev := s.reg.Devices[in.DeviceID]
	rec.Device = d
	s.reg.Devices[in.DeviceID] = rec
	if err := s.reg.save(s.dir); err != nil {
		if prev == nil {
			delete(s.reg.Devices, in.DeviceID)
		}
		return Device{}, err
	}
	return d, nil
}

// etagMatches implements If-Match: "*" or the etag, quoted or not.
func etagMatches(ifMatch, etag string) bool {
	v := strings.TrimSpace(ifMatch)
	v = strings.TrimPrefix(v, "W/")
	v = strings.Trim(v, `"`)
	return v == "*" || v == etag
}

// Handler serves /devices/... : the registry (devices and modules) and
// device-to-cloud messages.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// route is a parsed hub path.
type route struct {
	device, module string
	kind           string // "devices", "device", "modules", "module", "events"
}

func parsePath(escaped string) (route, bool) {
	if escaped == "/devices" || escaped == PathPrefix {
		return route{kind: "devices"}, true
	}
	rest, ok := strings.CutPrefix(escaped, PathPrefix)
	if !ok {
		return route{}, false
	}
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil || u == "" {
			return route{}, false
		}
		parts[i] = u
	}
	switch {
	case len(parts) == 1:
		return route{device: parts[0], kind: "device"}, true
	case len(parts) == 2 && parts[1] == "modules":
		return route{device: parts[0], kind: "modules"}, true
	case len(parts) == 3 && parts[1] == "modules":
		return route{device: parts[0], module: parts[2], kind: "module"}, true
	case len(parts) == 3 && parts[1] == "messages" && parts[2] == "events":
		return route{device: parts[0], kind: "events"}, true
	case len(parts) == 5 && parts[1] == "modules" && parts[3] == "messages" && parts[4] == "events":
		return route{device: parts[0], module: parts[2], kind: "events"}, true
	}
	return route{}, false
}

var errUnauthorized = errors.New("unauthorized")

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	fail := func(status int, code, text string) {
		writeHubError(w, status, code, text, now)
		s.log.Info("hub request refused", "method", r.Method, "path", r.URL.Path, "status", status, "code", code, "reason", text)
	}
	rt, ok := parsePath(r.URL.EscapedPath())
	if !ok {
		fail(http.StatusNotFound, "NotFound", "unknown path "+r.URL.Path)
		return
	}
	if v := r.URL.Query().Get("api-version"); !apiVersions[v] {
		fail(http.StatusBadRequest, codeInvalidVersion, fmt.Sprintf("Invalid or unsupported api-version %q", v))
		return
	}
	who, err := s.authenticate(r, now)
	if err != nil {
		s.log.Info("hub authentication failed", "path", r.URL.Path, "err", err)
		fail(http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
		return
	}
	if !allowed(who, rt, r.Method) {
		s.log.Info("hub request not allowed", "path", r.URL.Path, "caller", who.String())
		fail(http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
		return
	}
	res := s.dispatch(r, rt, now)
	if res.err != nil {
		var pe *errPut
		if errors.As(res.err, &pe) {
			fail(pe.status, pe.code, pe.text)
			return
		}
		s.log.Error("hub request failed", "method", r.Method, "path", r.URL.Path, "err", res.err)
		fail(http.StatusInternalServerError, codeServerError, "internal error; the labcloud log has the details")
		return
	}
	if res.methods != "" {
		w.Header().Set("Allow", res.methods)
		fail(http.StatusMethodNotAllowed, codeMethodNotAllowed, r.Method+" is not allowed here")
		return
	}
	if res.body == nil {
		w.WriteHeader(res.status)
	} else {
		writeJSON(w, res.status, res.etag, res.body)
	}
	s.log.Info("hub request", "method", r.Method, "path", r.URL.Path, "caller", who.String(), "status", res.status)
}
