// Package hub is edgev2-labcloud's IoT Hub: the identity registry (devices
// and modules, with IoT Hub's REST shapes, etags and errors) and the HTTPS
// device-to-cloud endpoint, authorised by real SAS tokens and X.509 thumbprints.
package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
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
		return nil, &ConfigError{Key: "hostname", Problem: "empty", Fix: "set the host name devices use for the hub"}
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

// principal is who a request authenticated as.
type principal struct {
	service        bool
	device, module string
	how            string // for logs: "service-sas", "device-sas", "module-sas", "x509"
}

func (p principal) String() string {
	switch {
	case p.service:
		return p.how
	case p.module != "":
		return p.how + ":" + p.device + "/" + p.module
	}
	return p.how + ":" + p.device
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

// allowed: the service policy may do everything; a device may read
// itself, manage its own modules (an edge device's scope on IoT Hub) and
// send as itself; a module may only send as itself. Registry reads need a
// policy with RegistryRead (or the edge device's scope): a module's token
// reading its own identity, keys included, is 401 as on the real hub.
func allowed(p principal, rt route, method string) bool {
	if p.service {
		return rt.kind != "events" // the service cannot send device-to-cloud
	}
	if p.device != rt.device {
		return false
	}
	if p.module != "" {
		return rt.module == p.module && rt.kind == "events"
	}
	switch rt.kind {
	case "device":
		return method == http.MethodGet
	case "modules", "module":
		return true
	case "events":
		return rt.module == ""
	}
	return false
}

// authenticate finds the caller: a SAS in Authorization (service policy,
// device or module scoped) or, without one, a TLS client certificate whose
// thumbprint a device registered.
func (s *Server) authenticate(r *http.Request, now time.Time) (principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := ParseSAS(h)
		if err != nil {
			return principal{}, err
		}
		return s.authenticateSAS(tok, now)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return s.authenticateCert(r.TLS.PeerCertificates, now)
	}
	return principal{}, fmt.Errorf("%w: no Authorization header and no client certificate", errUnauthorized)
}

// authenticateSAS: as on IoT Hub, the token's audience must be the hub's
// own host name, whatever Host the request carried.
func (s *Server) authenticateSAS(tok *SAS, now time.Time) (principal, error) {
	host, path, _ := strings.Cut(tok.Resource, "/")
	if !strings.EqualFold(host, s.cfg.Hostname) {
		return principal{}, fmt.Errorf("%w: token for host %q, not %q", errUnauthorized, host, s.cfg.Hostname)
	}
	if path == "" || tok.KeyName != "" {
		if tok.KeyName != s.cfg.ServicePolicyName || s.policyKey == nil {
			return principal{}, fmt.Errorf("%w: unknown policy %q", errUnauthorized, tok.KeyName)
		}
		if err := tok.Verify(now, s.policyKey); err != nil {
			return principal{}, err
		}
		return principal{service: true, how: "service-sas"}, nil
	}
	parts := strings.Split(path, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(parts) == 2 && parts[0] == "devices":
		d, ok := s.reg.Devices[parts[1]]
		if !ok || d.Device.Status != "enabled" {
			return principal{}, fmt.Errorf("%w: device %q unknown or disabled", errUnauthorized, parts[1])
		}
		if err := tok.Verify(now, sasKeys(d.Device.Authentication)...); err != nil {
			return principal{}, err
		}
		return principal{device: parts[1], how: "device-sas"}, nil
	case len(parts) == 4 && parts[0] == "devices" && parts[2] == "modules":
		d, ok := s.reg.Devices[parts[1]]
		if !ok || d.Device.Status != "enabled" {
			return principal{}, fmt.Errorf("%w: device %q unknown or disabled", errUnauthorized, parts[1])
		}
		m, ok := d.Modules[parts[3]]
		if !ok {
			return principal{}, fmt.Errorf("%w: module %q unknown", errUnauthorized, parts[3])
		}
		if err := tok.Verify(now, sasKeys(m.Authentication)...); err != nil {
			return principal{}, err
		}
		return principal{device: parts[1], module: parts[3], how: "module-sas"}, nil
	}
	return principal{}, fmt.Errorf("%w: resource %q is not a hub, device or module", errUnauthorized, tok.Resource)
}

// Thumbprints returns a certificate's SHA-1 and SHA-256 thumbprints in
// upper-case hex, the forms IoT Hub registers.
func Thumbprints(cert *x509.Certificate) (sha1Hex, sha256Hex string) {
	s1 := sha1.Sum(cert.Raw)
	s256 := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))
}

// TrustCAs adds verified CA certificates: a certificateAuthority device
// whose id is its certificate's CN authenticates with any certificate that
// chains to one of them (the hub's uploaded, verified CA certificates).
func (s *Server) TrustCAs(cas []*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cas == nil {
		s.cas = x509.NewCertPool()
	}
	for _, c := range cas {
		s.cas.AddCert(c)
	}
}

func (s *Server) authenticateCert(chain []*x509.Certificate, now time.Time) (principal, error) {
	leaf := chain[0]
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return principal{}, fmt.Errorf("%w: client certificate outside its validity", errUnauthorized)
	}
	t1, t256 := Thumbprints(leaf)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, d := range s.reg.Devices {
		a := d.Device.Authentication
		if a.Type != AuthSelfSigned || a.X509Thumbprint == nil || d.Device.Status != "enabled" {
			continue
		}
		for _, t := range []string{a.X509Thumbprint.PrimaryThumbprint, a.X509Thumbprint.SecondaryThumbprint} {
			if t != "" && (t == t1 || t == t256) {
				return principal{device: id, how: "x509"}, nil
			}
		}
	}
	if d, ok := s.reg.Devices[leaf.Subject.CommonName]; ok && s.cas != nil && d.Device.Status == "enabled" &&
		(d.Device.Authentication.Type == AuthCertificateAuthority || d.ChainToo) {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: s.cas, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			return principal{device: leaf.Subject.CommonName, how: "x509-ca"}, nil
		}
		return principal{}, fmt.Errorf("%w: certificate of %q does not chain to a verified CA: %v", errUnauthorized, leaf.Subject.CommonName, err)
	}
	return principal{}, fmt.Errorf("%w: no device has thumbprint %s", errUnauthorized, t256)
}

// result is what dispatch produced.
type result struct {
	status  int
	etag    string
	body    any
	err     error
	methods string // non-empty: method not allowed; these are
}

func (s *Server) dispatch(r *http.Request, rt route, now time.Time) result {
	switch rt.kind {
	case "devices":
		if r.Method == http.MethodGet {
			return s.listDevices(r.URL.Query().Get("top"))
		}
		return result{methods: "GET"}
	case "device":
		switch r.Method {
		case http.MethodGet:
			return s.getDevice(rt.device)
		case http.MethodPut:
			return s.putDeviceRequest(r, rt.device)
		case http.MethodDelete:
			return s.deleteDevice(rt.device, r.Header.Get("If-Match"))
		}
		return result{methods: "GET, PUT, DELETE"}
	case "modules":
		if r.Method == http.MethodGet {
			return s.listModules(rt.device)
		}
		return result{methods: "GET"}
	case "module":
		switch r.Method {
		case http.MethodGet:
			return s.getModule(rt.device, rt.module)
		case http.MethodPut:
			return s.putModuleRequest(r, rt.device, rt.module)
		case http.MethodDelete:
			return s.deleteModule(rt.device, rt.module, r.Header.Get("If-Match"))
		}
		return result{methods: "GET, PUT, DELETE"}
	case "events":
		if r.Method == http.MethodPost {
			return s.acceptMessage(r, rt, now)
		}
		return result{methods: "POST"}
	}
	return result{err: &errPut{http.StatusNotFound, "NotFound", "unknown path"}}
}

func notFound(code, text string) result {
	return result{err: &errPut{http.StatusNotFound, code, text}}
}

func (s *Server) getDevice(id string) result {
	d, ok := s.Device(id)
	if !ok {
		return notFound(codeDeviceNotFound, id)
	}
	return result{status: http.StatusOK, etag: d.Etag, body: d}
}

func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRegistryBytes+1))
	if err != nil {
		return err
	}
	if len(body) > maxRegistryBytes {
		return &errPut{http.StatusRequestEntityTooLarge, codeMessageTooLarge, "request body over 64 KiB"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &errPut{http.StatusBadRequest, codeArgumentInvalid, "request body is not valid JSON: " + err.Error()}
	}
	return nil
}

func (s *Server) putDeviceRequest(r *http.Request, id string) result {
	var in Device
	if err := readJSON(r, &in); err != nil {
		return result{err: err}
	}
	if in.DeviceID != "" && in.DeviceID != id {
		return result{err: &errPut{http.StatusBadRequest, codeArgumentInvalid, fmt.Sprintf("deviceId %q in the body differs from %q in the URL", in.DeviceID, id)}}
	}
	in.DeviceID = id
	ifMatch := r.Header.Get("If-Match")
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.putDevice(in, ifMatch, ifMatch != "")
	if err != nil {
		return result{err: err}
	}
	return result{status: http.StatusOK, etag: d.Etag, body: d}
}

func (s *Server) deleteDevice(id, ifMatch string) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.reg.Devices[id]
	if !ok {
		return notFound(codeDeviceNotFound, id)
	}
	if ifMatch != "" && !etagMatches(ifMatch, rec.Device.Etag) {
		return result{err: &errPut{http.StatusPreconditionFailed, codePrecondition, "PreconditionFailed, ETag may be invalid."}}
	}
	delete(s.reg.Devices, id)
	if err := s.reg.save(s.dir); err != nil {
		s.reg.Devices[id] = rec
		return result{err: err}
	}
	return result{status: http.StatusNoContent}
}

// maxListDevices is IoT Hub's cap on GET /devices (and its default top).
const maxListDevices = 1000

// listDevices is the registry list (GET /devices, the service SDKs'
// Registry.list / getDevices): devices sorted by id, at most top.
func (s *Server) listDevices(top string) result {
	n := maxListDevices
	if top != "" {
		v, err := strconv.Atoi(top)
		if err != nil || v < 1 || v > maxListDevices {
			return result{err: &errPut{http.StatusBadRequest, "ArgumentInvalid", fmt.Sprintf("top must be between 1 and %d, not %q", maxListDevices, top)}}
		}
		n = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Device, 0, len(s.reg.Devices))
	for _, d := range s.reg.Devices {
		out = append(out, d.Device)
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	if len(out) > n {
		out = out[:n]
	}
	return result{status: http.StatusOK, body: out}
}

func (s *Server) listModules(deviceID string) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.reg.Devices[deviceID]
	if !ok {
		return notFound(codeDeviceNotFound, deviceID)
	}
	out := make([]Module, 0, len(rec.Modules))
	for _, m := range rec.Modules {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Module) int { return strings.Compare(a.ModuleID, b.ModuleID) })
	return result{status: http.StatusOK, body: out}
}

func (s *Server) getModule(deviceID, moduleID string) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.reg.Devices[deviceID]
	if !ok {
		return notFound(codeDeviceNotFound, deviceID)
	}
	m, ok := rec.Modules[moduleID]
	if !ok {
		return notFound(codeModuleNotFound, fmt.Sprintf("Module %s on device %s not found", moduleID, deviceID))
	}
	return result{status: http.StatusOK, etag: m.Etag, body: *m}
}

// putModuleRequest: without If-Match it creates (409 if the module
// exists); with If-Match ("*" or the etag) it updates (404 if missing,
// 412 on a stale etag), keeping the generationId.
func (s *Server) putModuleRequest(r *http.Request, deviceID, moduleID string) result {
	var in Module
	if err := readJSON(r, &in); err != nil {
		return result{err: err}
	}
	if in.ModuleID != "" && in.ModuleID != moduleID || in.DeviceID != "" && in.DeviceID != deviceID {
		return result{err: &errPut{http.StatusBadRequest, codeArgumentInvalid, "moduleId or deviceId in the body differs from the URL"}}
	}
	if !ValidID(moduleID) {
		return result{err: &errPut{http.StatusBadRequest, codeArgumentInvalid, fmt.Sprintf("ModuleId %q is invalid", moduleID)}}
	}
	ifMatch := r.Header.Get("If-Match")
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.reg.Devices[deviceID]
	if !ok {
		return notFound(codeDeviceNotFound, deviceID)
	}
	old, exists := rec.Modules[moduleID]
	var m Module
	switch {
	case ifMatch == "" && exists:
		return result{err: &errPut{http.StatusConflict, codeModuleExists, fmt.Sprintf("Device %s already contains Module %s.", deviceID, moduleID)}}
	case ifMatch == "":
		m = Module{ModuleID: moduleID, DeviceID: deviceID, GenerationID: s.reg.nextGenerationID(now), ConnectionState: "Disconnected",
			ConnectionStateUpdatedTime: neverTime, LastActivityTime: neverTime}
	case !exists:
		return notFound(codeModuleNotFound, fmt.Sprintf("Module %s on device %s not found", moduleID, deviceID))
	case !etagMatches(ifMatch, old.Etag):
		return result{err: &errPut{http.StatusPreconditionFailed, codePrecondition, "PreconditionFailed, ETag may be invalid."}}
	default:
		m = *old
	}
	var oldAuth *Authentication
	if exists {
		oldAuth = &old.Authentication
	}
	if p := normalizeAuth(&in.Authentication, oldAuth); p != "" {
		return result{err: &errPut{http.StatusBadRequest, codeArgumentInvalid, p}}
	}
	m.Authentication, m.ManagedBy = in.Authentication, in.ManagedBy
	m.Etag = s.reg.nextEtag()
	rec.Modules[moduleID] = &m
	if err := s.reg.save(s.dir); err != nil {
		if exists {
			rec.Modules[moduleID] = old
		} else {
			delete(rec.Modules, moduleID)
		}
		return result{err: err}
	}
	return result{status: http.StatusOK, etag: m.Etag, body: m}
}

func (s *Server) deleteModule(deviceID, moduleID, ifMatch string) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.reg.Devices[deviceID]
	if !ok {
		return notFound(codeDeviceNotFound, deviceID)
	}
	m, ok := rec.Modules[moduleID]
	if !ok {
		return notFound(codeModuleNotFound, fmt.Sprintf("Module %s on device %s not found", moduleID, deviceID))
	}
	if ifMatch != "" && !etagMatches(ifMatch, m.Etag) {
		return result{err: &errPut{http.StatusPreconditionFailed, codePrecondition, "PreconditionFailed, ETag may be invalid."}}
	}
	delete(rec.Modules, moduleID)
	if err := s.reg.save(s.dir); err != nil {
		rec.Modules[moduleID] = m
		return result{err: err}
	}
	return result{status: http.StatusNoContent}
}

// acceptMessage takes a device-to-cloud message; the caller was already
// authorised as exactly this device or module.
func (s *Server) acceptMessage(r *http.Request, rt route, now time.Time) result {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxMessageBytes+1))
	if err != nil {
		return result{err: err}
	}
	if len(body) > MaxMessageBytes {
		return result{err: &errPut{http.StatusRequestEntityTooLarge, codeMessageTooLarge, "Message size exceeds 256 KiB"}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.reg.Devices[rt.device]
	if !ok {
		return notFound(codeDeviceNotFound, rt.device)
	}
	if rt.module == "" {
		rec.Device.LastActivityTime = hubTime(now)
	} else if m, ok := rec.Modules[rt.module]; ok {
		m.LastActivityTime = hubTime(now)
	} else {
		return notFound(codeModuleNotFound, rt.module)
	}
	key := rt.device + "/" + rt.module
	s.messages[key] = append(s.messages[key], body)
	return result{status: http.StatusNoContent}
}
