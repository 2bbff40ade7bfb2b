// Package mgmt is the iotedged-compatible management REST API (mgmt.sock)
// that edgeAgent and tools use to run modules, their identities and the device.
package mgmt

import (
	"context"
	"io"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// AgentModule is the module whose processes may call the agent-only routes.
const AgentModule = "edgeAgent"

// Modules is what the API needs of the module runtime. Errors are fault
// errors: their kind picks the HTTP status.
type Modules interface {
	List(ctx context.Context) ([]ctrd.Status, error)
	// Get returns a module's status and spec; the spec may be nil when the
	// runtime no longer has it.
	Get(ctx context.Context, name string) (ctrd.Status, *modspec.Spec, error)
	// Create makes module name from a ModuleSpec document, pulling its
	// image as its imagePullPolicy says, and starts it if start.
	Create(ctx context.Context, name string, specJSON []byte, start bool) error
	// Remove stops module name and deletes it.
	Remove(ctx context.Context, name string) error
	// Update replaces module name with the one specJSON describes (and
	// starts it if start); NotFound, changing nothing, when there is none.
	Update(ctx context.Context, name string, specJSON []byte, start bool) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	// Logs streams a module's output in Docker's multiplexed framing.
	Logs(name string, o logstore.Options) (io.ReadCloser, error)
	// Prepare readies an update to spec (pulls its image if needed).
	Prepare(ctx context.Context, spec *modspec.Spec) error
}

// Identity is a module identity in IoT Hub as the Identity service keeps it.
type Identity struct {
	ModuleID     string
	ManagedBy    string
	GenerationID string
	AuthType     string // "sas" when empty
}

// Identities is what the API needs of the Identity service.
type Identities interface {
	List(ctx context.Context) ([]Identity, error)
	Create(ctx context.Context, id, managedBy string) (Identity, error)
	// Update re-registers an identity; managedBy is "" when the caller did not say.
	Update(ctx context.Context, id, managedBy string) (Identity, error)
	Delete(ctx context.Context, id string) error
	// Reprovision provisions the device again.
	Reprovision(ctx context.Context) error
}

// PidResolver names the module a process belongs to: "" for a process of
// no module; an error when it cannot be told (the request is then refused).
type PidResolver func(ctx context.Context, pid int32) (module string, err error)

// SystemInfo is what GET /systeminfo reports. HostSystemInfo fills in
// what the host tells.
type SystemInfo struct {
	OSType       string // "linux"
	Architecture string // "x86_64", "aarch64", ...
	Version      string // edgev2's version
	Provisioning Provisioning
	// CurrentProvisioning, when set, is asked on every request (the device
	// may be provisioned again meanwhile); Provisioning is the answer while
	// it fails.
	CurrentProvisioning func(ctx context.Context) (Provisioning, error)
	ServerVersion       string
	KernelVersion       string
	OperatingSystem     string
	CPUs                int
	TotalMemory         uint64 // bytes
	Virtualized         string
	// Extra holds further properties (product info, ...), reported as
	// top-level string fields as aziot-edged does.
	Extra map[string]string
	// Resources samples GET /systeminfo/resources; nil means the host's
	// own figures (/proc, file systems mounted from block devices).
	Resources func(ctx context.Context) (SystemResources, error)
}

// Provisioning is SystemInfo.provisioning.
type Provisioning struct {
	Type                       string // "<source>.<method>": "dps.x509", "manual.sas", ... ("none")
	DynamicReprovisioning      bool
	AlwaysReprovisionOnStartup bool
}

// SystemResources is what GET /systeminfo/resources reports.
type SystemResources struct {
	HostUptime    time.Duration
	ProcessUptime time.Duration
	UsedCPU       float64 // percent of all CPUs since the previous sample
	UsedRAM       uint64  // bytes
	TotalRAM      uint64  // bytes
	Disks         []Disk
	// DockerStats is a JSON document of per-module statistics in Docker's
	// shape, passed through as a string ("[]" when empty).
	DockerStats string
}

// Disk is one mounted file system.
type Disk struct {
	Name           string
	AvailableSpace uint64
	TotalSpace     uint64
	FileSystem     string
	FileType       string
}

// BundleOptions is the query of GET /systeminfo/supportbundle.
type BundleOptions struct {
	Since, Until    time.Time // zero: unbounded
	IoTHubHostname  string    // the hub the check report should try ("" the configured one)
	EdgeRuntimeOnly bool      // module logs of edgeAgent and edgeHub only
}

// SupportBundle writes the support bundle for o (a zip) to w.
type SupportBundle func(ctx context.Context, o BundleOptions, w io.Writer) error
