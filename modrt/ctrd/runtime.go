package ctrd

import (
	"net/netip"
	"time"

	"github.com/edgev2/edgev2/modrt/policy"

	"github.com/containerd/containerd/oci"

	"github.com/edgev2/edgev2/modrt/modspec"
)

// State is where a module is in its life.
type State string

const (
	StateCreated    State = "created"    // container exists, never started
	StateRunning    State = "running"    // its task runs
	StateStopped    State = "stopped"    // exited with 0, or stopped by request
	StateFailed     State = "failed"     // exited non-zero (or could not start) and will not be restarted
	StateRestarting State = "restarting" // exited; a restart is scheduled by its policy
	StateRemoved    State = "removed"    // only in OnChange: the module is gone
)

// Status is a module's state as callers see it.
type Status struct {
	Name         string
	Image        string // as given to Create
	State        State
	ExitCode     int // of the last exit; -1 when it is unknown (the task vanished)
	StartedAt    time.Time
	FinishedAt   time.Time
	RestartCount int // restarts made by supervision since the last Start by request
	Pid          uint32
	Reason       string     // why the last start was refused ("" if it was not)
	Network      string     // "default", "host" or "none"
	Addr         netip.Addr // on the default network while the task runs
}

// CreateRequest describes a module to create.
type CreateRequest struct {
	Name  string
	Image string
	// Opts come from the spec translation; they are applied after
	// oci.WithImageConfig, so they override the image's defaults.
	Opts        []oci.SpecOpts
	Labels      map[string]string     // recorded on the container; keys must not start with "org.edgev2." nor be containerd's own (modspec.ContainerdLabel)
	Restart     modspec.RestartPolicy // default RestartAlways
	LogMaxBytes int64                 // per log file; default 10 MiB, at least 4 KiB
	LogFiles    int                   // files kept, the current one included; default 3
	Network     string                // "default" (joined to the default network at each start), "host" or "none"/"" (the opts alone decide)
	Ports       []modspec.PortMapping // published on the default network
}

const (
	defaultLogMaxBytes = modspec.DefaultLogMaxBytes
	defaultLogFiles    = modspec.DefaultLogFiles
	minLogMaxBytes     = 4 << 10
)

// ErrPolicy marks a refusal by the module policy (modrt/policy's, a leaf).
// RuntimeConfig's StartCheck and MountCheck wrap it, so supervision knows
// retrying will not help.
var ErrPolicy = policy.ErrPolicy
