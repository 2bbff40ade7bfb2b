// Package client is the typed D-Bus client of the Module Runtime
// (org.edgev2.ModuleRuntime1), used by edgectl and tools.
package client

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/modrt/api"
)

const (
	busName     = api.BusName
	rootPath    = api.ObjectPath
	iface       = api.Interface
	moduleIface = api.ModuleInterface
)

// Client talks to org.edgev2.ModuleRuntime1. Errors are fault errors
// (match kinds with fault.Is).
type Client struct{ caller bus.Caller }

// New uses an open bus connection.
func New(conn *godbus.Conn) *Client { return &Client{caller: bus.Caller{Conn: conn, Dest: busName}} }

// Interactive makes calls allow interactive authorization.
func (c *Client) Interactive(on bool) *Client {
	cc := *c
	cc.caller.Interactive = on
	return &cc
}

// Path is the object path of module name.
func Path(name string) godbus.ObjectPath { return bus.ChildPath(rootPath, api.Collection, name) }

// CreateModule creates module name from a ModuleSpec JSON and, if start,
// starts it.
func (c *Client) CreateModule(ctx context.Context, name, specJSON string, start bool) error {
	var p godbus.ObjectPath
	opts := map[string]godbus.Variant{api.OptStart: godbus.MakeVariant(start)}
	return c.caller.Call(ctx, rootPath, iface+"."+api.MethodCreateModule, []any{&p}, name, specJSON, opts)
}

// ListModules returns every module's name, sorted.
func (c *Client) ListModules(ctx context.Context) ([]string, error) {
	var names []string
	err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodListModules, []any{&names})
	return names, err
}

// Module describes one module (its properties).
type Module = api.Module

// Module reads a module's properties.
func (c *Client) Module(ctx context.Context, name string) (Module, error) {
	var m map[string]godbus.Variant
	if err := c.caller.Call(ctx, Path(name), "org.freedesktop.DBus.Properties.GetAll", []any{&m}, moduleIface); err != nil {
		return Module{}, err
	}
	var mod Module
	mod.Name, _ = m[api.PropName].Value().(string)
	mod.Image, _ = m[api.PropImage].Value().(string)
	mod.Status, _ = m[api.PropStatus].Value().(string)
	mod.ExitCode, _ = m[api.PropExitCode].Value().(int32)
	if s, _ := m[api.PropStartedAt].Value().(uint64); s > 0 {
		mod.StartedAt = time.Unix(int64(s), 0).UTC()
	}
	mod.RestartCount, _ = m[api.PropRestartCount].Value().(uint32)
	return mod, nil
}

// Start starts a module.
func (c *Client) Start(ctx context.Context, name string) error {
	return c.caller.Call(ctx, Path(name), moduleIface+"."+api.MethodStart, nil)
}

// Stop stops a module, killing it after timeout (0: the runtime's default).
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration) error {
	return c.caller.Call(ctx, Path(name), moduleIface+"."+api.MethodStop, nil, uint32(timeout/time.Second))
}

// Restart stops and starts a module.
func (c *Client) Restart(ctx context.Context, name string) error {
	return c.caller.Call(ctx, Path(name), moduleIface+"."+api.MethodRestart, nil)
}

// Remove stops a module and removes its container, snapshot and logs.
func (c *Client) Remove(ctx context.Context, name string) error {
	return c.caller.Call(ctx, Path(name), moduleIface+"."+api.MethodRemove, nil)
}

// LogOptions select which log lines GetLogs returns.
type LogOptions struct {
	Tail       int // -1 or 0: all
	Since      time.Time
	Until      time.Time
	Timestamps bool
}

// GetLogs returns a module's logs in Docker's 8-byte multiplexed framing
// (modrt/logstore.ParseFrames reads it). The caller closes the reader.
func (c *Client) GetLogs(ctx context.Context, name string, o LogOptions) (io.ReadCloser, error) {
	opts := map[string]godbus.Variant{}
	if o.Tail > 0 {
		opts[api.OptTail] = godbus.MakeVariant(int32(o.Tail))
	}
	if !o.Since.IsZero() {
		opts[api.OptSince] = godbus.MakeVariant(o.Since.Unix())
	}
	if !o.Until.IsZero() {
		opts[api.OptUntil] = godbus.MakeVariant(o.Until.Unix())
	}
	if o.Timestamps {
		opts[api.OptTimestamps] = godbus.MakeVariant(true)
	}
	var fd godbus.UnixFD
	if err := c.caller.Call(ctx, Path(name), moduleIface+"."+api.MethodGetLogs, []any{&fd}, opts); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "logs of "+name)
	if f == nil {
		return nil, fmt.Errorf("logs of %s: the runtime returned no file descriptor", name)
	}
	return f, nil
}

// ImportImage imports an OCI or Docker image archive; it returns the image
// names imported.
func (c *Client) ImportImage(ctx context.Context, archive *os.File) ([]string, error) {
	var names []string
	err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodImportImage, []any{&names}, godbus.UnixFD(archive.Fd()))
	return names, err
}

// PullAuth are registry credentials (sent over the bus, never logged).
type PullAuth struct{ Username, Password string }

// Progress is one PullProgress signal.
type Progress = api.Progress

// PullImage pulls ref and returns the manifest digest. progress, if not
// nil, is called (on the caller's goroutine) with the PullProgress signals
// for ref that the runtime sends while the pull runs. Progress is best
// effort: the runtime sends at most five a second and a signal that arrives
// while the reader is behind is dropped.
func (c *Client) PullImage(ctx context.Context, ref string, auth *PullAuth, progress func(Progress)) (string, error) {
	opts := map[string]godbus.Variant{}
	if auth != nil {
		opts[api.OptUsername] = godbus.MakeVariant(auth.Username)
		opts[api.OptPassword] = godbus.MakeVariant(auth.Password)
	}
	pull := func() (string, error) {
		var digest string
		err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodPullImage, []any{&digest}, ref, opts)
		return digest, err
	}
	if progress == nil {
		return pull()
	}
	// Watch delivers the runtime's PullProgress signals of every pull (they
	// reach each reader of the runtime, not only this caller); progressOf
	// keeps those of ref.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	sigs, err := c.caller.Watch(wctx, iface, api.SignalPullProgress)
	if err != nil {
		return "", fmt.Errorf("subscribe to PullProgress: %w", err)
	}
	type result struct {
		digest string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		digest, err := pull()
		done <- result{digest, err}
	}()
	report := func(s *godbus.Signal) {
		if p, ok := progressOf(s, ref); ok {
			progress(p)
		}
	}
	for {
		select {
		case r := <-done:
			// Signals sent before the reply may still be queued.
			for {
				select {
				case s, ok := <-sigs:
					if !ok {
						return r.digest, r.err
					}
					report(s)
				default:
					return r.digest, r.err
				}
			}
		case s, ok := <-sigs:
			if !ok {
				sigs = nil // ctx ended: the call ends too, with its error
				continue
			}
			report(s)
		}
	}
}

func progressOf(s *godbus.Signal, ref string) (Progress, bool) {
	if s == nil || s.Name != iface+"."+api.SignalPullProgress || s.Path != rootPath || len(s.Body) != 3 {
		return Progress{}, false
	}
	r, _ := s.Body[0].(string)
	done, ok1 := s.Body[1].(uint64)
	total, ok2 := s.Body[2].(uint64)
	if r != ref || !ok1 || !ok2 {
		return Progress{}, false
	}
	return Progress{Ref: r, Done: done, Total: total}, true
}

// SystemInfo returns the runtime's GetSystemInfo dictionary as strings.
func (c *Client) SystemInfo(ctx context.Context) (map[string]string, error) {
	var m map[string]godbus.Variant
	if err := c.caller.Call(ctx, rootPath, iface+"."+api.MethodGetSystemInfo, []any{&m}); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.Value().(string); ok {
			out[k] = s
		} else {
			out[k] = fmt.Sprint(v.Value())
		}
	}
	return out, nil
}
