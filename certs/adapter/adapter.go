// Package adapter serves the Certificates domain (package certs) on D-Bus as
// org.edgev2.Certificates1: it authorizes, converts and maps errors, nothing more.
package adapter

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/edgev2/edgev2/certs"
	"github.com/edgev2/edgev2/certs/api"
	"github.com/edgev2/edgev2/certs/config"
	bus "github.com/edgev2/edgev2/dbus"
)

// BusAPI adapts certs.Service to org.edgev2.Certificates1.
type BusAPI struct {
	bus.Adapter
	svc *certs.Service
}

// NewBusAPI registers the Certificates objects on srv and hooks the
// service's renewals to the Renewed signal.
func NewBusAPI(ctx context.Context, svc *certs.Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
	a := &BusAPI{Adapter: bus.Adapter{Ctx: ctx, Auth: auth, Server: srv, Log: log, DetailKey: api.DetailCertID}, svc: svc}
	srv.Root(bus.Interface{
		Name: api.Interface,
		Methods: map[string]any{
			api.MethodImportCertificate: a.importCertificate,
			api.MethodGetCertificate:    a.getCertificate,
			api.MethodListCertificates:  a.listCertificates,
			api.MethodCreateCertificate: a.createCertificate,
			api.MethodEnsureCertificate: a.ensureCertificate,
			api.MethodDeleteCertificate: a.deleteCertificate,
		},
	})
	srv.AddCollection(bus.Collection{
		Name: api.Collection,
		Interfaces: []bus.Interface{{
			Name:       api.CertInterface,
			Methods:    map[string]any{api.MethodRenew: a.renew},
			Properties: a.certProperties,
		}},
		Exists: svc.Exists,
		List:   svc.List,
	})
	// Certificate events name a certificate: only its readers hear of it.
	a.GuardReads(api.ActionRead)
	svc.OnRenewed = a.renewed
	return a
}

func unix(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

func (a *BusAPI) certProperties(id string) (map[string]godbus.Variant, error) {
	info, err := a.svc.Get(a.Ctx, id)
	if err != nil {
		return nil, err
	}
	leaf := info.Leaf()
	return map[string]godbus.Variant{
		api.PropID:          godbus.MakeVariant(info.ID),
		api.PropSubject:     godbus.MakeVariant(leaf.Subject.String()),
		api.PropIssuer:      godbus.MakeVariant(leaf.Issuer.String()),
		api.PropSerial:      godbus.MakeVariant(fmt.Sprintf("%x", leaf.SerialNumber)),
		api.PropNotBefore:   godbus.MakeVariant(unix(leaf.NotBefore)),
		api.PropNotAfter:    godbus.MakeVariant(unix(leaf.NotAfter)),
		api.PropFingerprint: godbus.MakeVariant(info.Fingerprint()),
		api.PropRenewAt:     godbus.MakeVariant(unix(info.RenewAt)),
		api.PropPreloaded:   godbus.MakeVariant(info.Preloaded),
	}, nil
}

// begin validates the id and authorizes the call.
func (a *BusAPI) begin(msg godbus.Message, action, id string) *godbus.Error {
	if err := api.ValidateID(id); err != nil {
		return bus.ToError(err)
	}
	return a.Authorize(bus.CallOf(msg), action, id)
}

// changed announces a new or replaced certificate.
func (a *BusAPI) changed(id string, existed bool) {
	if !existed {
		a.Server.Added(api.Collection, id)
		return
	}
	if props, err := a.certProperties(id); err == nil {
		a.Server.PropertiesChanged(a.Server.ChildPath(api.Collection, id), api.CertInterface, props)
	}
}

func (a *BusAPI) importCertificate(msg godbus.Message, id, pem string) (godbus.ObjectPath, *godbus.Error) {
	if e := a.begin(msg, api.ActionManage, id); e != nil {
		return "/", e
	}
	existed := a.svc.Exists(id)
	if _, err := a.svc.Import(a.Ctx, id, pem); err != nil {
		return "/", a.Fail("ImportCertificate", err)
	}
	a.changed(id, existed)
	return a.Server.ChildPath(api.Collection, id), nil
}

func (a *BusAPI) getCertificate(msg godbus.Message, id string) (string, *godbus.Error) {
	if e := a.begin(msg, api.ActionRead, id); e != nil {
		return "", e
	}
	info, err := a.svc.Get(a.Ctx, id)
	if err != nil {
		return "", a.Fail("GetCertificate", err)
	}
	return info.PEM(), nil
}

func (a *BusAPI) listCertificates(msg godbus.Message) ([]string, *godbus.Error) {
	if e := a.Authorize(bus.CallOf(msg), api.ActionRead, ""); e != nil {
		return nil, e
	}
	ids, err := a.svc.List()
	if err != nil {
		return nil, a.Fail("ListCertificates", err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

func (a *BusAPI) createCertificate(msg godbus.Message, id string, csr []byte, opts map[string]godbus.Variant) (string, *godbus.Error) {
	vals, e := bus.ParseOptions(opts, api.CreateOptionTypes)
	if e != nil {
		return "", e
	}
	if e := a.begin(msg, api.ActionManage, id); e != nil {
		return "", e
	}
	str := func(k string) string { s, _ := vals[k].(string); return s }
	o := certs.CreateOptions{Issuer: str(api.OptIssuer), KeyID: str(api.OptKeyID), IssuerCert: str(api.OptIssuerCert),
		IssuerKey: str(api.OptIssuerKey), ESTURL: str(api.OptESTURL), ESTLabel: str(api.OptESTLabel)}
	if v, ok := vals[api.OptValidity].(uint64); ok {
		if v == 0 || v > api.MaxValiditySeconds {
			return "", bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option \"validity\" is %d seconds; use 1 .. %d", v, api.MaxValiditySeconds))
		}
		o.Validity = time.Duration(v) * time.Second
	}
	o.CA, _ = vals[api.OptCA].(bool)
	if v, ok := vals[api.OptPathLen].(uint32); ok {
		if v > api.MaxPathLen {
			return "", bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option \"path_len\" is %d; use 0 .. %d", v, api.MaxPathLen))
		}
		o.PathLen, o.HasPathLen = int(v), true
	}
	if o.ESTURL != "" {
		if err := config.CheckHTTPS(o.ESTURL); err != nil {
			return "", bus.NewError(bus.ErrInvalidArgs, "option \"est_url\": "+err.Error())
		}
	}
	// The configuration says which CA key signs and whether the subject is
	// fixed; the caller must hold certs.issue on that CA (and certs.issue-ca
	// for a CA certificate), not just certs.manage on the target id.
	auth, err := a.svc.Authority(id, o)
	if err != nil {
		return "", a.Fail("CreateCertificate", err)
	}
	call := bus.CallOf(msg)
	if o.Issuer == "local_ca" {
		subject := api.SubjectRequested
		if auth.Configured {
			subject = api.SubjectConfigured
		}
		if e := a.AuthorizeDetails(call, api.ActionIssue, map[string]string{
			api.DetailCertID: auth.IssuerCert, api.DetailIssuedCertID: id, api.DetailSubject: subject}); e != nil {
			return "", e
		}
	}
	if o.CA {
		issuer := auth.IssuerCert
		if issuer == "" {
			issuer = id
		}
		if e := a.AuthorizeDetails(call, api.ActionIssueCA, map[string]string{api.DetailCertID: issuer, api.DetailIssuedCertID: id}); e != nil {
			return "", e
		}
	}
	existed := a.svc.Exists(id)
	info, err := a.svc.Create(a.Ctx, id, csr, o)
	if err != nil {
		return "", a.Fail("CreateCertificate", err)
	}
	a.changed(id, existed)
	return info.PEM(), nil
}

func (a *BusAPI) ensureCertificate(msg godbus.Message, id string) (string, *godbus.Error) {
	if e := a.begin(msg, api.ActionManage, id); e != nil {
		return "", e
	}
	existed := a.svc.Exists(id)
	info, err := a.svc.Ensure(a.Ctx, id)
	if err != nil {
		return "", a.Fail("EnsureCertificate", err)
	}
	if !existed {
		a.changed(id, false)
	}
	return info.PEM(), nil
}

func (a *BusAPI) deleteCertificate(msg godbus.Message, id string) *godbus.Error {
	if e := a.begin(msg, api.ActionManage, id); e != nil {
		return e
	}
	if err := a.svc.Delete(a.Ctx, id); err != nil {
		return a.Fail("DeleteCertificate", err)
	}
	a.Server.Removed(api.Collection, id)
	return nil
}

func (a *BusAPI) renew(msg godbus.Message) *godbus.Error {
	id, e := a.Child(msg, api.ActionManage)
	if e != nil {
		return e
	}
	if _, err := a.svc.Renew(a.Ctx, id); err != nil {
		return a.Fail("Renew", err)
	}
	return nil
}

// renewed emits Renewed and the changed properties (also for renewals the
// schedule made on its own).
func (a *BusAPI) renewed(id string) {
	path := a.Server.ChildPath(api.Collection, id)
	a.Server.Emit(path, api.CertInterface+"."+api.SignalRenewed)
	a.changed(id, true)
}
