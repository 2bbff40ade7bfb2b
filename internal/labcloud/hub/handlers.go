package hub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

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

// moduleNotFound is IoT Hub's answer for a module the device lacks.
func moduleNotFound(deviceID, moduleID string) result {
	return notFound(codeModuleNotFound, fmt.Sprintf("Module %s on device %s not found", moduleID, deviceID))
}

// moduleLocked looks up module moduleID of device deviceID under s.mu; m is
// nil when either is missing, and fail is then the 404 to answer.
func (s *Server) moduleLocked(deviceID, moduleID string) (rec *deviceRec, m *Module, fail result) {
	rec, ok := s.reg.Devices[deviceID]
	if !ok {
		return nil, nil, notFound(codeDeviceNotFound, deviceID)
	}
	if m = rec.Modules[moduleID]; m == nil {
		return rec, nil, moduleNotFound(deviceID, moduleID)
	}
	return rec, m, result{}
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
	_, m, fail := s.moduleLocked(deviceID, moduleID)
	if m == nil {
		return fail
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
		return moduleNotFound(deviceID, moduleID)
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
	rec, m, fail := s.moduleLocked(deviceID, moduleID)
	if m == nil {
		return fail
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
