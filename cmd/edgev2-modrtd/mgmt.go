package main

import (
	"context"
	"io"

	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
	"github.com/edgev2/edgev2/modrt/mgmt"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// mgmtModules serves the management API's module routes from the service.
type mgmtModules struct{ svc *modrt.Service }

var _ mgmt.Modules = mgmtModules{}

func (m mgmtModules) List(ctx context.Context) ([]ctrd.Status, error) {
	return m.svc.Runtime().List(ctx)
}
func (m mgmtModules) Get(ctx context.Context, name string) (ctrd.Status, *modspec.Spec, error) {
	st, err := m.svc.Runtime().Status(ctx, name)
	if err != nil {
		return ctrd.Status{}, nil, err
	}
	return st, m.svc.Spec(name), nil
}
func (m mgmtModules) Create(ctx context.Context, name string, specJSON []byte, start bool) error {
	return m.svc.Create(ctx, name, specJSON, start)
}
func (m mgmtModules) Remove(ctx context.Context, name string) error { return m.svc.Remove(ctx, name) }
func (m mgmtModules) Update(ctx context.Context, name string, specJSON []byte, start bool) error {
	return m.svc.Update(ctx, name, specJSON, start)
}
func (m mgmtModules) Start(ctx context.Context, name string) error {
	return m.svc.Runtime().Start(ctx, name)
}
func (m mgmtModules) Stop(ctx context.Context, name string) error {
	return m.svc.Runtime().Stop(ctx, name, modrt.StopTimeout)
}
func (m mgmtModules) Restart(ctx context.Context, name string) error {
	return m.svc.Runtime().Restart(ctx, name, modrt.StopTimeout)
}
func (m mgmtModules) Logs(name string, o logstore.Options) (io.ReadCloser, error) {
	return m.svc.Logs(name, o)
}

// Prepare pulls the image unless it is present or the spec says never.
func (m mgmtModules) Prepare(ctx context.Context, spec *modspec.Spec) error {
	if spec.ImagePullPolicy == modspec.PullNever {
		return nil
	}
	ref, err := spec.ImageRef()
	if err != nil {
		return err
	}
	if _, _, err := m.svc.Runtime().ImageDefaults(ctx, ref); err == nil {
		return nil
	}
	var auth *ctrd.PullAuth
	if a := spec.Config.Settings.Auth; a != nil {
		auth = &ctrd.PullAuth{Username: a.Username, Password: a.Password}
	}
	_, err = m.svc.Runtime().Pull(ctx, ref, auth, nil)
	return err
}

// mgmtIdentities serves the identity routes from the Identity service.
type mgmtIdentities struct{ ids *iclient.Client }

var _ mgmt.Identities = mgmtIdentities{}

func toIdentity(d idapi.ModuleIdentity) mgmt.Identity {
	return mgmt.Identity{ModuleID: d.ModuleID, ManagedBy: d.ManagedBy, GenerationID: d.GenerationID, AuthType: d.AuthType}
}

func (m mgmtIdentities) List(ctx context.Context) ([]mgmt.Identity, error) {
	ds, err := m.ids.Modules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]mgmt.Identity, 0, len(ds))
	for _, d := range ds {
		out = append(out, toIdentity(d))
	}
	return out, nil
}
func (m mgmtIdentities) Create(ctx context.Context, id, managedBy string) (mgmt.Identity, error) {
	d, err := m.ids.CreateModule(ctx, id, managedBy)
	return toIdentity(d), err
}
func (m mgmtIdentities) Update(ctx context.Context, id, managedBy string) (mgmt.Identity, error) {
	d, err := m.ids.UpdateModule(ctx, id, managedBy)
	return toIdentity(d), err
}
func (m mgmtIdentities) Delete(ctx context.Context, id string) error {
	return m.ids.DeleteModule(ctx, id)
}
func (m mgmtIdentities) Reprovision(ctx context.Context) error { return m.ids.Reprovision(ctx) }

// Provisioning is /systeminfo's provisioning from the Identity service:
// type "<source>.<method>" ("dps.x509", "manual.sas", ...; "none"). The
// flags are the Identity service's when it reports them; identityd keeps
// its provisioning across restarts (no reprovisioning at start-up) and
// reprovisions only when asked, so both are false otherwise.
func (m mgmtIdentities) Provisioning(ctx context.Context) (mgmt.Provisioning, error) {
	d, err := m.ids.ProvisioningInfo(ctx)
	if err != nil {
		return mgmt.Provisioning{}, err
	}
	return provisioningOf(d), nil
}

func provisioningOf(d idapi.ProvisioningInfo) mgmt.Provisioning {
	p := mgmt.Provisioning{Type: d.Source, DynamicReprovisioning: d.DynamicReprovisioning, AlwaysReprovisionOnStartup: d.AlwaysReprovisionOnStartup}
	if m := d.Method; m != "" && p.Type != "" && p.Type != "none" {
		p.Type += "." + m
	}
	return p
}
