package e2e_test

import (
	"fmt"
	"testing"
	"time"
)

// TestOneModulesAbandonedRequestsDoNotDenyAnother (red team s14): module
// flooder asks for server certificates on 64 connections at once and
// hangs up on each request once modrtd has called certd. Each call still
// runs in certd (and keyd) and stays pending on modrtd's one bus
// connection after the module is gone, so the module could pile up calls
// until dbus-daemon refused modrtd's (128 pending replies per connection)
// or the services' queues held everyone else up. Module victim, asking
// for the trust bundle and encrypting every 100 ms meanwhile, is answered
// 200 throughout the flood.
func TestOneModulesAbandonedRequestsDoNotDenyAnother(t *testing.T) {
	w := newWorld(t)
	w.provisionDPS(t, "workload-flood")
	w.startRuntime(t, fmt.Sprintf("edgev2-flood-%d", time.Now().UnixNano()), "")
	w.createClient(t, "victim", map[string]string{"FLOOD_ROLE": "victim"})
	w.dev.WaitModuleLine(t, "victim", "FLOOD-VICTIM", func(l map[string]any) bool {
		return l["trust"] == float64(200) && l["encrypt"] == float64(200)
	})
	w.createClient(t, "flooder", map[string]string{"FLOOD_ROLE": "flooder", "FLOOD_SECONDS": "20"})
	done := w.dev.WaitModuleLine(t, "flooder", "FLOOD-DONE", nil)
	t.Logf("flooder: %v", done)
	// The victim's requests made while the flood ran (after its first
	// seconds, by which the calls it left behind have piled up).
	from, to := done["start"].(float64)+5000, done["end"].(float64)
	var during, failed []map[string]any
	for _, l := range w.dev.ModuleLines(t, "victim", "FLOOD-VICTIM") {
		if tm := l["t"].(float64); tm >= from && tm <= to {
			during = append(during, l)
			if l["trust"] != float64(200) || l["encrypt"] != float64(200) {
				failed = append(failed, l)
			}
		}
	}
	if len(during) == 0 {
		t.Fatal("module victim made no request while the flood ran")
	}
	if len(failed) > 0 {
		t.Fatalf("module victim was refused %d of its %d requests while module flooder hung up on its own (first: %v); want every one 200", len(failed), len(during), failed[0])
	}
}
