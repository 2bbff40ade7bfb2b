package mgmt

import (
	"encoding/json"
	"maps"
	"strconv"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// The JSON shapes of managementVersion_*.yaml. They are wire types only:
// handlers convert to and from the domain at the edge.

type errorResponse struct {
	Message string `json:"message"`
}

type moduleList struct {
	Modules []moduleDetails `json:"modules"`
}

type moduleDetails struct {
	ID     string       `json:"id"`
	Name   string       `json:"name"`
	Type   string       `json:"type"`
	Config moduleConfig `json:"config"`
	Status moduleStatus `json:"status"`
}

type moduleConfig struct {
	Settings json.RawMessage `json:"settings"`
	Env      []envVar        `json:"env"`
}

type envVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type moduleStatus struct {
	StartTime     string        `json:"startTime,omitempty"`
	ExitStatus    *exitStatus   `json:"exitStatus,omitempty"`
	RuntimeStatus runtimeStatus `json:"runtimeStatus"`
}

type exitStatus struct {
	ExitTime   string `json:"exitTime"`
	StatusCode string `json:"statusCode"`
}

type runtimeStatus struct {
	Status      string `json:"status"`
	Description string `json:"description,omitempty"`
}

type identityList struct {
	Identities []identityJSON `json:"identities"`
}

type identityJSON struct {
	ModuleID     string  `json:"moduleId"`
	ManagedBy    *string `json:"managedBy"` // null when unknown, as aziot-edged
	GenerationID string  `json:"generationId"`
	AuthType     string  `json:"authType"`
}

// identitySpec is the body of POST /identities and (optionally) PUT
// /identities/{name}.
type identitySpec struct {
	ModuleID  string `json:"moduleId"`
	ManagedBy string `json:"managedBy"`
}

type provisioningJSON struct {
	Type                       string `json:"type"`
	DynamicReprovisioning      bool   `json:"dynamicReprovisioning"`
	AlwaysReprovisionOnStartup bool   `json:"alwaysReprovisionOnStartup"`
}

type systemResourcesJSON struct {
	HostUptime    uint64     `json:"host_uptime"`
	ProcessUptime uint64     `json:"process_uptime"`
	UsedCPU       float64    `json:"used_cpu"`
	UsedRAM       uint64     `json:"used_ram"`
	TotalRAM      uint64     `json:"total_ram"`
	Disks         []diskJSON `json:"disks"`
	DockerStats   string     `json:"docker_stats"`
}

type diskJSON struct {
	Name           string `json:"name"`
	AvailableSpace uint64 `json:"available_space"`
	TotalSpace     uint64 `json:"total_space"`
	FileSystem     string `json:"file_system"`
	FileType       string `json:"file_type"`
}

// Runtime statuses edgeAgent understands (edgelet-core's ModuleStatus).
const (
	statusRunning = "running"
	statusStopped = "stopped"
	statusFailed  = "failed"
	statusUnknown = "unknown"
)

// wireTime is how aziot-edged writes times: RFC 3339 in UTC ending in
// 'Z' (IoT Hub reads other offsets as local time).
func wireTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// runtimeStatusOf maps edgev2's states onto edgeAgent's four: a module that
// was never started or stopped cleanly is "stopped", one that exited
// non-zero is "failed" (also while supervision waits to restart it).
func runtimeStatusOf(st ctrd.Status) runtimeStatus {
	rs := runtimeStatus{Description: string(st.State)}
	if st.Reason != "" {
		rs.Description = string(st.State) + ": " + st.Reason
	}
	switch st.State {
	case ctrd.StateRunning:
		rs.Status = statusRunning
	case ctrd.StateCreated, ctrd.StateStopped:
		rs.Status = statusStopped
	case ctrd.StateFailed:
		rs.Status = statusFailed
	case ctrd.StateRestarting:
		rs.Status = statusFailed
		if st.ExitCode == 0 {
			rs.Status = statusStopped
		}
	default:
		rs.Status = statusUnknown
	}
	return rs
}

func statusJSON(st ctrd.Status) moduleStatus {
	out := moduleStatus{RuntimeStatus: runtimeStatusOf(st)}
	if !st.StartedAt.IsZero() {
		out.StartTime = wireTime(st.StartedAt)
	}
	if !st.FinishedAt.IsZero() && st.State != ctrd.StateRunning {
		out.ExitStatus = &exitStatus{ExitTime: wireTime(st.FinishedAt), StatusCode: strconv.Itoa(st.ExitCode)}
	}
	return out
}

// configJSON is a spec's config without its registry credentials.
func configJSON(spec *modspec.Spec) (moduleConfig, error) {
	r := spec.Redacted()
	settings, err := json.Marshal(r.Config.Settings)
	if err != nil {
		return moduleConfig{}, err
	}
	env := make([]envVar, 0, len(r.Config.Env))
	for _, e := range r.Config.Env {
		env = append(env, envVar{Key: e.Key, Value: e.Value})
	}
	return moduleConfig{Settings: settings, Env: env}, nil
}

// detailsJSON describes a module; spec may be nil (then settings carry
// the image alone).
func detailsJSON(st ctrd.Status, spec *modspec.Spec) (moduleDetails, error) {
	d := moduleDetails{ID: st.Name, Name: st.Name, Type: modspec.TypeDocker, Status: statusJSON(st)}
	if spec == nil {
		settings, err := json.Marshal(map[string]string{"image": st.Image})
		if err != nil {
			return moduleDetails{}, err
		}
		d.Config = moduleConfig{Settings: settings, Env: []envVar{}}
		return d, nil
	}
	c, err := configJSON(spec)
	if err != nil {
		return moduleDetails{}, err
	}
	d.Config = c
	if spec.Type != "" {
		d.Type = spec.Type
	}
	return d, nil
}

// ModuleDetailsJSON is a module in the swagger's ModuleDetails shape,
// registry credentials left out; the workload API's module list uses it.
func ModuleDetailsJSON(st ctrd.Status, spec *modspec.Spec) (json.RawMessage, error) {
	d, err := detailsJSON(st, spec)
	if err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// specDetailsJSON is the answer to a create or update: the spec as
// accepted, with the status it was left in.
func specDetailsJSON(spec *modspec.Spec, status moduleStatus) (moduleDetails, error) {
	c, err := configJSON(spec)
	if err != nil {
		return moduleDetails{}, err
	}
	return moduleDetails{ID: spec.Name, Name: spec.Name, Type: spec.Type, Config: c, Status: status}, nil
}

func identityToJSON(id Identity) identityJSON {
	out := identityJSON{ModuleID: id.ModuleID, GenerationID: id.GenerationID, AuthType: id.AuthType}
	if id.ManagedBy != "" {
		mb := id.ManagedBy
		out.ManagedBy = &mb
	}
	if out.AuthType == "" {
		out.AuthType = "sas"
	}
	return out
}

// systemInfoJSON flattens info the way aziot-edged does: known fields
// under their (mixed-case, historical) names, Extra alongside them.
func systemInfoJSON(info SystemInfo) map[string]any {
	m := make(map[string]any, 10+len(info.Extra))
	for k, v := range info.Extra {
		m[k] = v
	}
	maps.Copy(m, map[string]any{
		"osType":       info.OSType,
		"architecture": info.Architecture,
		"version":      info.Version,
		"provisioning": provisioningJSON{
			Type:                       info.Provisioning.Type,
			DynamicReprovisioning:      info.Provisioning.DynamicReprovisioning,
			AlwaysReprovisionOnStartup: info.Provisioning.AlwaysReprovisionOnStartup,
		},
		"server_version":   info.ServerVersion,
		"kernel_version":   info.KernelVersion,
		"operating_system": info.OperatingSystem,
		"cpus":             info.CPUs,
		"total_memory":     info.TotalMemory,
		"virtualized":      info.Virtualized,
	})
	return m
}

func resourcesJSON(r SystemResources) systemResourcesJSON {
	out := systemResourcesJSON{
		HostUptime:    uint64(max(r.HostUptime, 0) / time.Second),
		ProcessUptime: uint64(max(r.ProcessUptime, 0) / time.Second),
		UsedCPU:       r.UsedCPU,
		UsedRAM:       r.UsedRAM,
		TotalRAM:      r.TotalRAM,
		Disks:         make([]diskJSON, 0, len(r.Disks)),
		DockerStats:   r.DockerStats,
	}
	if out.DockerStats == "" {
		out.DockerStats = "[]"
	}
	for _, d := range r.Disks {
		out.Disks = append(out.Disks, diskJSON{Name: d.Name, AvailableSpace: d.AvailableSpace,
			TotalSpace: d.TotalSpace, FileSystem: d.FileSystem, FileType: d.FileType})
	}
	return out
}
