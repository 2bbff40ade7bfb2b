package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"

	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/atomicfile"
	"github.com/edgev2/edgev2/modrt"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// deviceRecord is the device identity the modules were created under.
type deviceRecord struct {
	Hub    string `json:"hub"`
	Device string `json:"device"`
}

// identityWatch resets the modules when the Identity service reports a
// device identity with another hub or device id than the one recorded
// (also across a modrtd restart: the record is a file).
type identityWatch struct {
	ids    *iclient.Client
	svc    *modrt.Service
	locals []rtconfig.LocalModule
	record string // file holding the deviceRecord
	log    *slog.Logger
}

// Run checks once, then on every IdentityChanged, until ctx ends.
func (w *identityWatch) Run(ctx context.Context) {
	changed, err := w.ids.WatchIdentityChanged(ctx)
	if err != nil {
		w.log.Warn("cannot watch the device identity; modules will not follow a reprovisioning", "err", err)
		return
	}
	w.check(ctx)
	for range changed {
		w.check(ctx)
	}
}

func (w *identityWatch) check(ctx context.Context) {
	dev, err := w.ids.DeviceIdentity(ctx)
	if err != nil {
		return // not provisioned (yet): nothing to compare
	}
	now := deviceRecord{Hub: dev.HubHostname, Device: dev.DeviceID}
	if now.Hub == "" || now.Device == "" {
		return
	}
	var was deviceRecord
	if data, err := os.ReadFile(w.record); err == nil {
		json.Unmarshal(data, &was)
	}
	if was == now {
		w.log.Debug("device identity unchanged; modules kept", "hub", now.Hub, "device", now.Device)
		return
	}
	if was.Hub != "" {
		w.log.Info("device identity changed; resetting modules", "old_hub", was.Hub, "old_device", was.Device, "hub", now.Hub, "device", now.Device)
		if _, err := w.svc.ResetForNewIdentity(ctx, w.locals); err != nil {
			w.log.Error("reset modules for the new identity", "err", err)
		}
	}
	data, _ := json.Marshal(now)
	if err := atomicfile.WriteFile(w.record, data, 0o600); err != nil {
		w.log.Warn("record the device identity", "err", err)
	}
}
