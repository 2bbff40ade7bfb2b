package mgmt

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
)

func TestRuntimeStatusMapsOntoEdgeAgentStatuses(t *testing.T) {
	for _, c := range []struct {
		st   ctrd.Status
		want string
	}{
		{ctrd.Status{State: ctrd.StateRunning}, "running"},
		{ctrd.Status{State: ctrd.StateCreated}, "stopped"},
		{ctrd.Status{State: ctrd.StateStopped}, "stopped"},
		{ctrd.Status{State: ctrd.StateFailed, ExitCode: 1}, "failed"},
		{ctrd.Status{State: ctrd.StateRestarting, ExitCode: 137}, "failed"},
		{ctrd.Status{State: ctrd.StateRestarting, ExitCode: 0}, "stopped"},
		{ctrd.Status{State: "weird"}, "unknown"},
	} {
		if got := runtimeStatusOf(c.st); got.Status != c.want || got.Description != string(c.st.State) {
			t.Errorf("%s: %+v, want %s", c.st.State, got, c.want)
		}
	}
}

func TestStatusTimesAreUTCWithZ(t *testing.T) {
	loc := time.FixedZone("X", -5*3600)
	st := ctrd.Status{State: ctrd.StateStopped, ExitCode: -1,
		StartedAt: time.Date(2024, 1, 2, 3, 4, 5, 600000000, loc), FinishedAt: time.Date(2024, 1, 2, 4, 0, 0, 0, loc)}
	b, _ := json.Marshal(statusJSON(st))
	want := `{"startTime":"2024-01-02T08:04:05.6Z","exitStatus":{"exitTime":"2024-01-02T09:00:00Z","statusCode":"-1"},"runtimeStatus":{"status":"stopped","description":"stopped"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(statusJSON(ctrd.Status{State: ctrd.StateCreated}))
	if string(b) != `{"runtimeStatus":{"status":"stopped","description":"created"}}` {
		t.Errorf("never started: %s", b)
	}
}

func TestIdentityJSONShape(t *testing.T) {
	b, _ := json.Marshal(identityToJSON(Identity{ModuleID: "m", GenerationID: "g"}))
	if string(b) != `{"moduleId":"m","managedBy":null,"generationId":"g","authType":"sas"}` {
		t.Errorf("%s", b)
	}
}
