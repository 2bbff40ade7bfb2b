package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/internal/testenv"
)

// serviceConfigs are the per-service configs the demo wrote, by the name
// they have in /etc/edgev2 on a device.
var serviceConfigs = map[string]string{}

// checkDevice runs `edgectl check` on the demo device: the four configs
// gathered in one directory, as /etc/edgev2 holds them, and the services on
// the demo's bus.
func checkDevice(p testenv.TB, b *testenv.Bus) (string, error) {
	bin := testenv.BuildBinary(p, "./cmd/edgectl")
	dir := testenv.SharedTempDir(p, "demo-etc")
	for name, src := range serviceConfigs {
		data, err := os.ReadFile(src)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	cmd := exec.Command(bin, "check", "--config-dir", dir, "--polkit-actions-dir", filepath.Join(testenv.RepoRoot(), "policy"), "--output", "json")
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+b.Address)
	out, runErr := cmd.Output()
	var rep struct {
		Status           string
		Errors, Warnings int
		Checks           []struct{ Name, Status, Message, Fix string }
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return "", fmt.Errorf("edgectl check: %v (%v): %s", err, runErr, out)
	}
	var problems []string
	for _, c := range rep.Checks {
		if c.Status == "error" || c.Status == "warning" {
			problems = append(problems, fmt.Sprintf("%s %s: %s", c.Status, c.Name, c.Message))
		}
	}
	if rep.Errors > 0 {
		return "", fmt.Errorf("edgectl check found %d errors:\n    %s", rep.Errors, strings.Join(problems, "\n    "))
	}
	detail := fmt.Sprintf("%d checks, %d errors, %d warnings", len(rep.Checks), rep.Errors, rep.Warnings)
	if len(problems) > 0 {
		detail += " (" + strings.Join(problems, "; ") + ")"
	}
	return detail, nil
}
