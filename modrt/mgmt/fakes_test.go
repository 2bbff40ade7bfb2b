package mgmt

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"sync"
	"time"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// fakeModules is an in-memory module runtime.
type fakeModules struct {
	mu       sync.Mutex
	mods     map[string]*fakeModule
	calls    []string
	prepared []*modspec.Spec
	logOpts  logstore.Options
	logData  []byte
	follow   *io.PipeReader // served by Logs when set
	failWith error          // every call fails with it when set
}

type fakeModule struct {
	st   ctrd.Status
	spec *modspec.Spec
}

func newFakeModules() *fakeModules { return &fakeModules{mods: map[string]*fakeModule{}} }

func (f *fakeModules) record(call string) error {
	f.calls = append(f.calls, call)
	return f.failWith
}

func (f *fakeModules) add(st ctrd.Status, spec *modspec.Spec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mods[st.Name] = &fakeModule{st: st, spec: spec}
}

func (f *fakeModules) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeModules) List(ctx context.Context) ([]ctrd.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("list"); err != nil {
		return nil, err
	}
	var out []ctrd.Status
	for _, m := range f.mods {
		out = append(out, m.st)
	}
	return out, nil
}

func (f *fakeModules) get(name string) (*fakeModule, error) {
	m, ok := f.mods[name]
	if !ok {
		return nil, fault.New(fault.NotFound, "module %q does not exist", name)
	}
	return m, nil
}

func (f *fakeModules) Get(ctx context.Context, name string) (ctrd.Status, *modspec.Spec, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("get " + name); err != nil {
		return ctrd.Status{}, nil, err
	}
	m, err := f.get(name)
	if err != nil {
		return ctrd.Status{}, nil, err
	}
	return m.st, m.spec, nil
}

func (f *fakeModules) Create(ctx context.Context, name string, specJSON []byte, start bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := "create " + name
	if start {
		call += " start"
	}
	if err := f.record(call); err != nil {
		return err
	}
	if _, ok := f.mods[name]; ok {
		return fault.New(fault.AlreadyExists, "module %q exists", name)
	}
	spec, err := modspec.ParseSpec(specJSON)
	if err != nil {
		return err
	}
	st := ctrd.Status{Name: name, Image: spec.Config.Settings.Image, State: ctrd.StateCreated}
	if start {
		st.State, st.StartedAt = ctrd.StateRunning, time.Now()
	}
	f.mods[name] = &fakeModule{st: st, spec: spec}
	return nil
}

func (f *fakeModules) Remove(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("remove " + name); err != nil {
		return err
	}
	if _, err := f.get(name); err != nil {
		return err
	}
	delete(f.mods, name)
	return nil
}

// Update does what the service's Update does, recording each step: the
// module must exist, then it is removed and created again.
func (f *fakeModules) Update(ctx context.Context, name string, specJSON []byte, start bool) error {
	if _, _, err := f.Get(ctx, name); err != nil {
		return err
	}
	if err := f.Remove(ctx, name); err != nil {
		return err
	}
	return f.Create(ctx, name, specJSON, start)
}

func (f *fakeModules) setState(call, name string, s ctrd.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(call + " " + name); err != nil {
		return err
	}
	m, err := f.get(name)
	if err != nil {
		return err
	}
	m.st.State = s
	return nil
}

func (f *fakeModules) Start(ctx context.Context, name string) error {
	return f.setState("start", name, ctrd.StateRunning)
}

func (f *fakeModules) Stop(ctx context.Context, name string) error {
	return f.setState("stop", name, ctrd.StateStopped)
}

func (f *fakeModules) Restart(ctx context.Context, name string) error {
	return f.setState("restart", name, ctrd.StateRunning)
}

func (f *fakeModules) Logs(name string, o logstore.Options) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("logs " + name); err != nil {
		return nil, err
	}
	if _, err := f.get(name); err != nil {
		return nil, err
	}
	f.logOpts = o
	if f.follow != nil {
		return f.follow, nil
	}
	return io.NopCloser(bytes.NewReader(f.logData)), nil
}

func (f *fakeModules) Prepare(ctx context.Context, spec *modspec.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("prepare " + spec.Name); err != nil {
		return err
	}
	f.prepared = append(f.prepared, spec)
	return nil
}

// fakeIdentities is an in-memory Identity service.
type fakeIdentities struct {
	mu           sync.Mutex
	ids          map[string]Identity
	gen          int
	reprovisions int
}

func newFakeIdentities() *fakeIdentities { return &fakeIdentities{ids: map[string]Identity{}} }

func (f *fakeIdentities) List(ctx context.Context) ([]Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Identity
	for _, id := range f.ids {
		out = append(out, id)
	}
	return out, nil
}

func (f *fakeIdentities) Create(ctx context.Context, id, managedBy string) (Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ids[id]; ok {
		return Identity{}, fault.New(fault.AlreadyExists, "identity %q exists", id)
	}
	f.gen++
	ident := Identity{ModuleID: id, ManagedBy: managedBy, GenerationID: "gen" + string(rune('0'+f.gen))}
	f.ids[id] = ident
	return ident, nil
}

func (f *fakeIdentities) Update(ctx context.Context, id, managedBy string) (Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ident, ok := f.ids[id]
	if !ok {
		return Identity{}, fault.New(fault.NotFound, "identity %q does not exist", id)
	}
	if managedBy != "" {
		ident.ManagedBy = managedBy
	}
	f.ids[id] = ident
	return ident, nil
}

// Delete is idempotent, as the Identity service's DeleteModuleIdentity is.
func (f *fakeIdentities) Delete(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ids, id)
	return nil
}

func (f *fakeIdentities) Reprovision(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reprovisions++
	return nil
}

// frame is one record of Docker's multiplexed stream.
func frame(stream byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}
