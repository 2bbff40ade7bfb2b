package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/edgev2/edgev2/internal/supportbundle"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/mgmt"
)

// checkTimeout bounds the `edgectl check` a support bundle runs.
const checkTimeout = 2 * time.Minute

// supportBundle serves the management API's support bundle: the same
// bundle `edgectl support-bundle` writes (supportbundle.Collect), with the
// configs next to modrtd's own, the check report of `edgectl check` run
// here (as aziot-edged runs `iotedge check`), and the modules from svc.
func supportBundle(svc *modrt.Service, configPath string) mgmt.SupportBundle {
	return func(ctx context.Context, o mgmt.BundleOptions, w io.Writer) error {
		dir := filepath.Dir(configPath)
		so := supportbundle.Options{SuperConfig: filepath.Join(dir, "config.toml"), ConfigDir: dir,
			Since: o.Since, Until: o.Until, EdgeRuntimeOnly: o.EdgeRuntimeOnly, Modules: bundleModules{svc}}
		so.Check = func(ctx context.Context) ([]byte, error) {
			exe, err := exec.LookPath("edgectl")
			if err != nil {
				return nil, errors.New("edgectl is not installed on this system")
			}
			ctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			// edgectl check exits 1 when a check fails; its JSON report is
			// what the bundle wants either way.
			out, err := exec.CommandContext(ctx, exe, "check", "--json", "-c", so.SuperConfig, "--config-dir", dir).Output()
			if json.Valid(out) && len(out) > 0 {
				return out, nil
			}
			return nil, fmt.Errorf("edgectl check: %v", err)
		}
		return supportbundle.Write(w, supportbundle.Collect(ctx, so))
	}
}

// bundleModules is the bundle's view of the runtime.
type bundleModules struct{ svc *modrt.Service }

func (b bundleModules) List(ctx context.Context) ([]string, error) {
	sts, err := b.svc.Runtime().List(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(sts))
	for _, st := range sts {
		names = append(names, st.Name)
	}
	return names, nil
}

func (b bundleModules) Describe(ctx context.Context, name string) (any, error) {
	return b.svc.Runtime().Status(ctx, name)
}

func (b bundleModules) Logs(_ context.Context, name string, since, until time.Time, tail int) (string, error) {
	rc, err := b.svc.Logs(name, logstore.Options{Tail: tail, Since: since, Until: until, Timestamps: true})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return logstore.FramedText(rc)
}
