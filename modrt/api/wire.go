package api

import "time"

// Module is a module's properties (ModuleInterface), as clients read them.
type Module struct {
	Name         string    `json:"name"`
	Image        string    `json:"image"`
	Status       string    `json:"status"`
	ExitCode     int32     `json:"exit_code"`
	StartedAt    time.Time `json:"started_at"`
	RestartCount uint32    `json:"restart_count"`
}

// Progress is one PullProgress signal (ref s, done t, total t).
type Progress struct {
	Ref         string
	Done, Total uint64
}
