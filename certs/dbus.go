package certs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/fault"
)

// Bus names of the Certificates service.
const (
	BusName       = "org.edgev2.Certificates1"
	ObjectPath    = godbus.ObjectPath("/org/edgev2/Certificates1")
	Interface     = "org.edgev2.Certificates1"
	CertInterface = "org.edgev2.Certificates1.Certificate"
	Collection    = "certs"
)

// polkit actions.
const (
	ActionRead   = "org.edgev2.certs.read"
	ActionManage = "org.edgev2.certs.manage"
	// ActionIssue: sign under a CA (details cert_id = the CA's certificate
	// id, issued_cert_id = the new certificate's id, subject = "configured"
	// when [cert_issuance.<id>] fixes the subject, else "requested").
	ActionIssue = "org.edgev2.certs.issue"
	// ActionIssueCA: issue a CA certificate (details cert_id = the issuing
	// CA, the certificate itself when self-signed; issued_cert_id).
	ActionIssueCA = "org.edgev2.certs.issue-ca"
)

// Values of the subject detail of ActionIssue.
const (
	SubjectConfigured = "configured"
	SubjectRequested  = "requested"
)

// BusAPI adapts Service to org.edgev2.Certificates1.
type BusAPI struct {
	ctx  context.Context
	svc  *Service
	auth bus.Authority
	srv  *bus.Server
	log  *slog.Logger
}

// NewBusAPI registers the Certificates objects on srv and hooks the
// service's renewals to the Renewed signal.
func NewBusAPI(ctx context.Context, svc *Service, auth bus.Authority, srv *bus.Server, log *slog.Logger) *BusAPI {
	a := &BusAPI{ctx: ctx, svc: svc, auth: auth, srv: srv, log: log}
	srv.Root(bus.Interface{
		Name: Interface,
		Methods: map[string]any{
			"ImportCertificate": a.importCertificate,
			"GetCertificate":    a.getCertificate,
			"ListCertificates":  a.listCertificates,
			"CreateCertificate": a.createCertificate,
			"EnsureCertificate": a.ensureCertificate,
			"DeleteCertificate": a.deleteCertificate,
		},
	})
	srv.AddCollection(bus.Collection{
		Name: Collection,
		Interfaces: []bus.Interface{{
			Name:       CertInterface,
			Methods:    map[string]any{"Renew": a.renew},
			Properties: a.certProperties,
		}},
		Exists: svc.Exists,
		List:   svc.List,
	})
	srv.CanRead = func(call bus.Call, id string) *godbus.Error { return a.authorize(call, ActionRead, id) }
	// Certificate events name a certificate: only its readers hear of it.
	srv.CanReceive = func(peer, id string) bool { return bus.MayReceive(ctx, auth, peer, ActionRead, certDetails(id)) }
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
	info, err := a.svc.Get(a.ctx, id)
	if err != nil {
		return nil, err
	}
	leaf := info.Leaf()
	return map[string]godbus.Variant{
		"Id":          godbus.MakeVariant(info.ID),
		"Subject":     godbus.MakeVariant(leaf.Subject.String()),
		"Issuer":      godbus.MakeVariant(leaf.Issuer.String()),
		"Serial":      godbus.MakeVariant(fmt.Sprintf("%x", leaf.SerialNumber)),
		"NotBefore":   godbus.MakeVariant(unix(leaf.NotBefore)),
		"NotAfter":    godbus.MakeVariant(unix(leaf.NotAfter)),
		"Fingerprint": godbus.MakeVariant(info.Fingerprint()),
		"RenewAt":     godbus.MakeVariant(unix(info.RenewAt)),
		"Preloaded":   godbus.MakeVariant(info.Preloaded),
	}, nil
}

// certDetails are the polkit details naming certificate id (none for the
// service).
func certDetails(id string) map[string]string {
	if id == "" {
		return nil
	}
	return map[string]string{"cert_id": id}
}

func (a *BusAPI) authorize(call bus.Call, action, id string) *godbus.Error {
	return a.auth.Authorize(a.ctx, call, action, certDetails(id))
}

func (a *BusAPI) fail(op string, err error) *godbus.Error {
	if k := fault.KindOf(err); k == fault.Failed || k == fault.Unavailable {
		a.log.Error(op+" failed", "err", err)
	} else {
		a.log.Debug(op+" refused", "err", err)
	}
	return bus.ToError(err)
}

// begin validates the id and authorizes the call.
func (a *BusAPI) begin(msg godbus.Message, action, id string) *godbus.Error {
	if err := ValidateID(id); err != nil {
		return bus.ToError(err)
	}
	return a.authorize(bus.CallOf(msg), action, id)
}

// changed announces a new or replaced certificate.
func (a *BusAPI) changed(id string, existed bool) {
	if !existed {
		a.srv.Added(Collection, id)
		return
	}
	if props, err := a.certProperties(id); err == nil {
		a.srv.PropertiesChanged(a.srv.ChildPath(Collection, id), CertInterface, props)
	}
}

func (a *BusAPI) importCertificate(msg godbus.Message, id, pem string) (godbus.ObjectPath, *godbus.Error) {
	if e := a.begin(msg, ActionManage, id); e != nil {
		return "/", e
	}
	existed := a.svc.Exists(id)
	if _, err := a.svc.Import(a.ctx, id, pem); err != nil {
		return "/", a.fail("ImportCertificate", err)
	}
	a.changed(id, existed)
	return a.srv.ChildPath(Collection, id), nil
}

func (a *BusAPI) getCertificate(msg godbus.Message, id string) (string, *godbus.Error) {
	if e := a.begin(msg, ActionRead, id); e != nil {
		return "", e
	}
	info, err := a.svc.Get(a.ctx, id)
	if err != nil {
		return "", a.fail("GetCertificate", err)
	}
	return info.PEM(), nil
}

func (a *BusAPI) listCertificates(msg godbus.Message) ([]string, *godbus.Error) {
	if e := a.authorize(bus.CallOf(msg), ActionRead, ""); e != nil {
		return nil, e
	}
	ids, err := a.svc.List()
	if err != nil {
		return nil, a.fail("ListCertificates", err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

func (a *BusAPI) createCertificate(msg godbus.Message, id string, csr []byte, opts map[string]godbus.Variant) (string, *godbus.Error) {
	vals, e := bus.ParseOptions(opts, map[string]string{
		"issuer": "s", "key_id": "s", "issuer_cert": "s", "issuer_key": "s",
		"validity": "t", "ca": "b", "path_len": "u", "est_url": "s", "est_label": "s",
	})
	if e != nil {
		return "", e
	}
	if e := a.begin(msg, ActionManage, id); e != nil {
		return "", e
	}
	str := func(k string) string { s, _ := vals[k].(string); return s }
	o := CreateOptions{Issuer: str("issuer"), KeyID: str("key_id"), IssuerCert: str("issuer_cert"),
		IssuerKey: str("issuer_key"), ESTURL: str("est_url"), ESTLabel: str("est_label")}
	if v, ok := vals["validity"].(uint64); ok {
		if v == 0 || v > uint64(100*365*24*3600) {
			return "", bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option \"validity\" is %d seconds; use 1 .. 3153600000", v))
		}
		o.Validity = time.Duration(v) * time.Second
	}
	o.CA, _ = vals["ca"].(bool)
	if v, ok := vals["path_len"].(uint32); ok {
		if v > 16 {
			return "", bus.NewError(bus.ErrInvalidArgs, fmt.Sprintf("option \"path_len\" is %d; use 0 .. 16", v))
		}
		o.PathLen, o.HasPathLen = int(v), true
	}
	if o.ESTURL != "" {
		if err := checkHTTPS(o.ESTURL); err != nil {
			return "", bus.NewError(bus.ErrInvalidArgs, "option \"est_url\": "+err.Error())
		}
	}
	// The configuration says which CA key signs and whether the subject is
	// fixed; the caller must hold certs.issue on that CA (and certs.issue-ca
	// for a CA certificate), not just certs.manage on the target id.
	auth, err := a.svc.Authority(id, o)
	if err != nil {
		return "", a.fail("CreateCertificate", err)
	}
	call := bus.CallOf(msg)
	if o.Issuer == "local_ca" {
		subject := SubjectRequested
		if auth.Configured {
			subject = SubjectConfigured
		}
		if e := a.auth.Authorize(a.ctx, call, ActionIssue, map[string]string{
			"cert_id": auth.IssuerCert, "issued_cert_id": id, "subject": subject}); e != nil {
			return "", e
		}
	}
	if o.CA {
		issuer := auth.IssuerCert
		if issuer == "" {
			issuer = id
		}
		if e := a.auth.Authorize(a.ctx, call, ActionIssueCA, map[string]string{"cert_id": issuer, "issued_cert_id": id}); e != nil {
			return "", e
		}
	}
	existed := a.svc.Exists(id)
	info, err := a.svc.Create(a.ctx, id, csr, o)
	if err != nil {
		return "", a.fail("CreateCertificate", err)
	}
	a.changed(id, existed)
	return info.PEM(), nil
}

func (a *BusAPI) ensureCertificate(msg godbus.Message, id string) (string, *godbus.Error) {
	if e := a.begin(msg, ActionManage, id); e != nil {
		return "", e
	}
	existed := a.svc.Exists(id)
	info, err := a.svc.Ensure(a.ctx, id)
	if err != nil {
		return "", a.fail("EnsureCertificate", err)
	}
	if !existed {
		a.changed(id, false)
	}
	return info.PEM(), nil
}

func (a *BusAPI) deleteCertificate(msg godbus.Message, id string) *godbus.Error {
	if e := a.begin(msg, ActionManage, id); e != nil {
		return e
	}
	if err := a.svc.Delete(a.ctx, id); err != nil {
		return a.fail("DeleteCertificate", err)
	}
	a.srv.Removed(Collection, id)
	return nil
}

func (a *BusAPI) renew(msg godbus.Message) *godbus.Error {
	id, e := a.srv.PathID(msg)
	if e != nil {
		return e
	}
	if e := a.authorize(bus.CallOf(msg), ActionManage, id); e != nil {
		return e
	}
	if e := a.srv.Exists(msg); e != nil {
		return e
	}
	if _, err := a.svc.Renew(a.ctx, id); err != nil {
		return a.fail("Renew", err)
	}
	return nil
}

// renewed emits Renewed and the changed properties (also for renewals the
// schedule made on its own).
func (a *BusAPI) renewed(id string) {
	path := a.srv.ChildPath(Collection, id)
	a.srv.Emit(path, CertInterface+".Renewed")
	a.changed(id, true)
}
