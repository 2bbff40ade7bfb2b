// Package adapter serves the Module Runtime (package modrt) on D-Bus as
// org.edgev2.ModuleRuntime1: method calls become service calls, runtime
// state changes become signals.
package adapter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// BusAPI adapts modrt.Service to org.edgev2.ModuleRuntime1.
type BusAPI struct {
	bus.Adapter
	svc *modrt.Service
}

// NewBusAPI registers the runtime's objects on srv and turns the runtime's
// state changes into StateChanged, PropertiesChanged and ObjectManager signals.
func NewBusAPI(ctx context.Context, svc *modrt.Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
	a := &BusAPI{Adapter: bus.Adapter{Ctx: ctx, Auth: auth, Server: srv, Log: log, DetailKey: api.DetailModuleID}, svc: svc}
	srv.Root(bus.Interface{
		Name: api.Interface,
		Methods: map[string]any{
			api.MethodCreateModule:  a.createModule,
			api.MethodListModules:   a.listModules,
			api.MethodImportImage:   a.importImage,
			api.MethodPullImage:     a.pullImage,
			api.MethodGetSystemInfo: a.getSystemInfo,
		},
	})
	srv.AddCollection(bus.Collection{
		Name: api.Collection,
		Interfaces: []bus.Interface{{
			Name: api.ModuleInterface,
			Methods: map[string]any{
				api.MethodStart: a.start, api.MethodStop: a.stop, api.MethodRestart: a.restart, api.MethodRemove: a.remove,
				api.MethodGetLogs: a.getLogsUnhooked,
			},
			Properties: a.moduleProperties,
		}},
		Exists: func(name string) bool { _, err := svc.Runtime().Status(ctx, name); return err == nil },
		List: func() ([]string, error) {
			sts, err := svc.Runtime().List(ctx)
			names := make([]string, 0, len(sts))
			for _, st := range sts {
				names = append(names, st.Name)
			}
			return names, err
		},
	})
	// Module events reach only the peers that may read that module.
	a.GuardReads(api.ActionRead)
	svc.Runtime().OnChange(a.changed)
	return a
}

func unixTime(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

func statusProps(st ctrd.Status) map[string]godbus.Variant {
	return map[string]godbus.Variant{
		api.PropName:         godbus.MakeVariant(st.Name),
		api.PropImage:        godbus.MakeVariant(st.Image),
		api.PropStatus:       godbus.MakeVariant(string(st.State)),
		api.PropExitCode:     godbus.MakeVariant(int32(st.ExitCode)),
		api.PropStartedAt:    godbus.MakeVariant(unixTime(st.StartedAt)),
		api.PropRestartCount: godbus.MakeVariant(uint32(st.RestartCount)),
	}
}

func (a *BusAPI) moduleProperties(name string) (map[string]godbus.Variant, error) {
	st, err := a.svc.Runtime().Status(a.Ctx, name)
	if err != nil {
		return nil, err
	}
	return statusProps(st), nil
}

func (a *BusAPI) changed(st ctrd.Status) {
	if st.State == ctrd.StateRemoved {
		a.Server.Removed(api.Collection, st.Name)
		return
	}
	path := a.Server.ChildPath(api.Collection, st.Name)
	a.Server.PropertiesChanged(path, api.ModuleInterface, statusProps(st))
	a.Server.Emit(path, api.ModuleInterface+".StateChanged", string(st.State))
}

func (a *BusAPI) createModule(msg godbus.Message, name, specJSON string, opts map[string]godbus.Variant) (godbus.ObjectPath, *godbus.Error) {
	vals, e := bus.ParseOptions(opts, map[string]string{"start": "b"})
	if e != nil {
		return "/", e
	}
	if err := modspec.ValidateName(name); err != nil {
		return "/", bus.ToError(err)
	}
	if e := a.Authorize(bus.CallOf(msg), api.ActionManage, name); e != nil {
		return "/", e
	}
	start := true
	if v, ok := vals["start"].(bool); ok {
		start = v
	}
	if err := a.svc.Create(a.Ctx, name, []byte(specJSON), start); err != nil {
		return "/", a.Fail(api.MethodCreateModule, err)
	}
	a.Server.Added(api.Collection, name)
	return a.Server.ChildPath(api.Collection, name), nil
}

func (a *BusAPI) listModules(msg godbus.Message) ([]string, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	sts, err := a.svc.Runtime().List(a.Ctx)
	if err != nil {
		return nil, a.Fail(api.MethodListModules, err)
	}
	names := make([]string, 0, len(sts))
	for _, st := range sts {
		names = append(names, st.Name)
	}
	return names, nil
}

func (a *BusAPI) importImage(msg godbus.Message, fd godbus.UnixFD) ([]string, *godbus.Error) {
	f := os.NewFile(uintptr(fd), "image-archive")
	if f == nil {
		return nil, bus.NewError(bus.ErrInvalidArgs, "archive is not a file descriptor")
	}
	defer f.Close()
	if e := a.Authorize(bus.CallOf(msg), api.ActionManage, ""); e != nil {
		return nil, e
	}
	names, err := a.svc.Runtime().ImportImage(a.Ctx, f)
	if err != nil {
		return nil, a.Fail(api.MethodImportImage, err)
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

func (a *BusAPI) getSystemInfo(msg godbus.Message) (map[string]godbus.Variant, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	host, _ := os.Hostname()
	return map[string]godbus.Variant{
		"os_type": godbus.MakeVariant(runtime.GOOS), "architecture": godbus.MakeVariant(runtime.GOARCH),
		"version": godbus.MakeVariant("edgev2 0.1"), "hostname": godbus.MakeVariant(host),
		"snapshotter": godbus.MakeVariant(a.svc.Runtime().Snapshotter()),
	}, nil
}

// manage is a module object's life-cycle method: authorised with
// modules.manage on the object's module, then do; errors as method's.
func (a *BusAPI) manage(msg godbus.Message, method string, do func(name string) error) *godbus.Error {
	name, e := a.Child(msg, api.ActionManage)
	if e != nil {
		return e
	}
	if err := do(name); err != nil {
		return a.Fail(method, err)
	}
	return nil
}

func (a *BusAPI) start(msg godbus.Message) *godbus.Error {
	return a.manage(msg, api.MethodStart, func(name string) error { return a.svc.Runtime().Start(a.Ctx, name) })
}

func (a *BusAPI) stop(msg godbus.Message, timeoutS uint32) *godbus.Error {
	timeout := modrt.StopTimeout
	if timeoutS > 0 {
		timeout = time.Duration(min(timeoutS, 3600)) * time.Second
	}
	return a.manage(msg, api.MethodStop, func(name string) error { return a.svc.Runtime().Stop(a.Ctx, name, timeout) })
}

func (a *BusAPI) restart(msg godbus.Message) *godbus.Error {
	return a.manage(msg, api.MethodRestart, func(name string) error { return a.svc.Runtime().Restart(a.Ctx, name, modrt.StopTimeout) })
}

func (a *BusAPI) remove(msg godbus.Message) *godbus.Error {
	return a.manage(msg, api.MethodRemove, func(name string) error { return a.svc.Remove(a.Ctx, name) })
}

// openLogs opens the read end of a pipe the logs are copied into; the
// LogsReplier sends it and closes it.
func (a *BusAPI) openLogs(msg godbus.Message, opts map[string]godbus.Variant) (*os.File, *godbus.Error) {
	name, e := a.Child(msg, api.ActionRead)
	if e != nil {
		return nil, e
	}
	vals, e := bus.ParseOptions(opts, map[string]string{"tail": "i", "since": "x", "until": "x", "timestamps": "b"})
	if e != nil {
		return nil, e
	}
	o := logstore.Options{Tail: -1}
	if v, ok := vals["tail"].(int32); ok {
		o.Tail = int(v)
	}
	if v, ok := vals["since"].(int64); ok && v > 0 {
		o.Since = time.Unix(v, 0)
	}
	if v, ok := vals["until"].(int64); ok && v > 0 {
		o.Until = time.Unix(v, 0)
	}
	o.Timestamps, _ = vals["timestamps"].(bool)
	rc, err := a.svc.Logs(name, o)
	if err != nil {
		return nil, a.Fail(api.MethodGetLogs, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		rc.Close()
		return nil, a.Fail(api.MethodGetLogs, fmt.Errorf("pipe: %w", err))
	}
	go func() {
		defer rc.Close()
		defer w.Close()
		io.Copy(w, rc)
	}()
	return r, nil
}

func (a *BusAPI) pullImage(msg godbus.Message, ref string, opts map[string]godbus.Variant) (string, *godbus.Error) {
	vals, e := bus.ParseOptions(opts, map[string]string{"username": "s", "password": "s"})
	if e != nil {
		return "", e
	}
	call := bus.CallOf(msg)
	if e := a.Authorize(call, api.ActionManage, ""); e != nil {
		return "", e
	}
	var auth *ctrd.PullAuth
	if u, ok := vals["username"].(string); ok {
		p, _ := vals["password"].(string)
		auth = &ctrd.PullAuth{Username: u, Password: p}
	}
	last := time.Time{}
	digest, err := a.svc.Runtime().Pull(a.Ctx, ref, auth, func(p ctrd.PullProgress) {
		if time.Since(last) < 200*time.Millisecond && p.Done < p.Total {
			return // at most five signals a second
		}
		last = time.Now()
		// The caller and whoever may read the runtime as a whole.
		a.Server.EmitAlso(call.Sender, api.ObjectPath, api.Interface+".PullProgress", p.Ref, uint64(p.Done), uint64(p.Total))
	})
	if err != nil {
		return "", a.Fail(api.MethodPullImage, err)
	}
	return digest, nil
}
