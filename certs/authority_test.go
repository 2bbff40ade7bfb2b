package certs_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	bus "github.com/edgev2/edgev2/dbus"
	labest "github.com/edgev2/edgev2/internal/labcloud/est"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	"github.com/edgev2/edgev2/internal/testpki"
)

// authorityPolicy: certd's device CA, the ids the configuration lets a
// principal have issued under it (with their subjects), and one EST id.
const authorityPolicy = `
[est]
url = "%s/.well-known/est"
trusted_certs = ["est-ca"]
username = "device-1"
password = "est-pass"

[preloaded_certs]
est-ca = "file://%s"

[cert_issuance.device-ca]
method = "self_signed"
ca = true
common_name = "edgev2 device CA"

[cert_issuance.tester-server]
method = "local_ca"
issuer_cert = "device-ca"
common_name = "tester-server"
dns_names = ["tester.local"]

[cert_issuance.tester-subca]
method = "local_ca"
issuer_cert = "device-ca"
ca = true
common_name = "tester sub CA"

[cert_issuance.tester-est]
method = "est"
common_name = "tester-est"
`

// attackerCall is CreateCertificate (or another Certificates1 method) made
// with gdbus by the second uid; it returns the output and exit code.
type attackerCall func(method string, args ...string) (string, int)

// csrText is a fresh key's CSR as a GVariant byte array for gdbus.
func csrText(t *testing.T, subject pkix.Name, dns []string) string {
	t.Helper()
	return csrTextOf(t, &x509.CertificateRequest{Subject: subject, DNSNames: dns})
}

// csrTextOf is a request made from tmpl for a new key, as GVariant text.
func csrTextOf(t *testing.T, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der := testpki.CSRFor(t, testpki.NewKey(t), tmpl)
	parts := make([]string, len(der))
	for i, b := range der {
		parts[i] = fmt.Sprintf("0x%02x", b)
	}
	return "[byte " + strings.Join(parts, ", ") + "]"
}

// optsText is an a{sv} of string options (and "ca") as GVariant text.
func optsText(o map[string]string, ca bool) string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("'%s': <'%s'>", k, o[k]))
	}
	if ca {
		parts = append(parts, "'ca': <true>")
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// principalRules compiles a [[principal]] for the second uid the way
// `edgectl config apply` does.
func principalRules(t *testing.T, grants string) string {
	t.Helper()
	c, err := superconfig.Parse("/etc/edgev2/config.toml", []byte(fmt.Sprintf("[[principal]]\nuser = %q\n%s", testenv.OtherUser, grants)))
	if err != nil {
		t.Fatal(err)
	}
	out, err := superconfig.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range out.Files {
		if f.Path == superconfig.RulesPath {
			return string(f.Data)
		}
	}
	t.Fatal("no rules compiled")
	return ""
}

// TestIssuanceAuthorityCannotBeBorrowed is issue 12's classes 1 and 2 as
// the second uid: with certs.manage on tester-* only, then with the
// compiled certs_issue / certs_issue_ca grants, every way to borrow
// certd's CA key or EST identity is refused by name, and the issuance the
// configuration gives the principal works.
func TestIssuanceAuthorityCannotBeBorrowed(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.SharedTempDir(t, "authority")
	estURL, estCA, _ := labest.StartTestServer(t, labest.Config{Users: []labest.User{{Name: "device-1", Password: "est-pass"}}})
	s := startStack(t, fmt.Sprintf(authorityPolicy, estURL, writeShared(t, dir, "est-ca.pem", estCA)))
	ctx := ctxT(t)
	caPEM, err := s.certs.Ensure(ctx, "device-ca")
	if err != nil {
		t.Fatal(err)
	}
	var call attackerCall = func(method string, args ...string) (string, int) {
		argv := append([]string{"call", "--address", s.bus.Address, "--dest", certsapi.BusName,
			"--object-path", string(certsapi.ObjectPath), "--method", certsapi.Interface + "." + method}, args...)
		out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", argv...)
		return out + errOut, code
	}
	refused := func(t *testing.T, what, out string, code int, errName, names string) {
		t.Helper()
		if code == 0 || !strings.Contains(out, errName) || !strings.Contains(out, names) {
			t.Fatalf("%s: exit %d, %s\nwant %s naming %q", what, code, out, errName, names)
		}
	}
	stored := func(t *testing.T, id string) bool {
		_, err := s.certs.Get(ctx, id)
		return err == nil
	}
	leafCSR := csrText(t, pkix.Name{CommonName: "edgeHub"}, []string{"hub.example.net"})
	serverCSR := csrText(t, pkix.Name{CommonName: "tester-server"}, []string{"tester.local"})

	t.Run("ScopedManageCannotBorrowTheCAKey", func(t *testing.T) {
		s.polkit.AddRule(t, "manage-tester", principalRules(t, `certs_manage = ["tester-*"]`))
		// The CA certificate is public: the attacker stores a copy under its own id ...
		if out, code := call("ImportCertificate", "tester-ca", "'"+caPEM+"'"); code != 0 {
			t.Fatalf("ImportCertificate tester-ca: %d %s", code, out)
		}
		// ... and names the real CA's key: refused, the copy is no CA of certd's configuration.
		out, code := call("CreateCertificate", "tester-leaf", leafCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "tester-ca", "issuer_key": "device-ca"}, false))
		refused(t, "issuing under a copied CA certificate", out, code, bus.ErrInvalidArgs, "issuer_cert")
		// Naming a different key for the real CA: refused by name.
		out, code = call("CreateCertificate", "tester-leaf", leafCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca", "issuer_key": "tester-ca"}, false))
		refused(t, "choosing the CA's key", out, code, bus.ErrInvalidArgs, "issuer_key")
		// The real CA with its configured key: certs.manage on the target is not enough.
		out, code = call("CreateCertificate", "tester-leaf", leafCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false))
		refused(t, "issuing under device-ca with certs.manage only", out, code, bus.ErrNotAuthorized, certsapi.ActionIssue)
		out, code = call("CreateCertificate", "tester-server", serverCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false))
		refused(t, "issuing a configured id with certs.manage only", out, code, bus.ErrNotAuthorized, certsapi.ActionIssue)
		if stored(t, "tester-leaf") || stored(t, "tester-server") {
			t.Fatal("a refused issuance stored a certificate")
		}
	})

	t.Run("IssueGrantGivesOnlyConfiguredSubjects", func(t *testing.T) {
		s.polkit.AddRule(t, "issue-tester", principalRules(t, `certs_manage = ["tester-*"]
certs_issue = ["device-ca"]`))
		// A subject of the caller's choosing (an id the configuration does not describe).
		out, code := call("CreateCertificate", "tester-leaf", leafCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false))
		refused(t, "a requested subject under device-ca", out, code, bus.ErrNotAuthorized, certsapi.ActionIssue)
		// A configured id with another subject or name than configured.
		out, code = call("CreateCertificate", "tester-server", leafCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false))
		refused(t, "tester-server with subject edgeHub", out, code, bus.ErrInvalidArgs, "subject")
		wrongName := csrText(t, pkix.Name{CommonName: "tester-server"}, []string{"hub.example.net"})
		out, code = call("CreateCertificate", "tester-server", wrongName, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false))
		refused(t, "tester-server for hub.example.net", out, code, bus.ErrInvalidArgs, "hub.example.net")
		// A CA certificate needs certs.issue-ca.
		subCSR := csrText(t, pkix.Name{CommonName: "tester sub CA"}, nil)
		out, code = call("CreateCertificate", "tester-subca", subCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, true))
		refused(t, "a sub-CA without certs.issue-ca", out, code, bus.ErrNotAuthorized, certsapi.ActionIssueCA)
		// The issuance the configuration gives the principal works.
		out, code = call("CreateCertificate", "tester-server", serverCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false))
		if code != 0 {
			t.Fatalf("the configured issuance of tester-server: %d %s", code, out)
		}
		pemText, _ := s.certs.Get(ctx, "tester-server")
		chain := parseChain(t, pemText)
		if chain[0].Subject.CommonName != "tester-server" || chain[0].IsCA || chain[0].Issuer.CommonName != "edgev2 device CA" {
			t.Fatalf("tester-server: subject %v, CA %v, issuer %v", chain[0].Subject, chain[0].IsCA, chain[0].Issuer)
		}
		opensslVerify(t, pemText, caPEM)
	})

	t.Run("ConfiguredLifetimeBoundsTheCallersValidity", func(t *testing.T) {
		// [cert_issuance.tester-server] gives 30 days (the default): a
		// caller allowed to have it issued cannot ask for a century.
		s.polkit.AddRule(t, "lifetime-tester", principalRules(t, `certs_manage = ["tester-*"]
certs_issue = ["device-ca"]`))
		opts := "{'issuer': <'local_ca'>, 'issuer_cert': <'device-ca'>, 'validity': <uint64 3153600000>}"
		out, code := call("CreateCertificate", "tester-server", serverCSR, opts)
		refused(t, "tester-server for 100 years", out, code, bus.ErrInvalidArgs, "validity")
		// Without a validity, the configured lifetime.
		if out, code := call("CreateCertificate", "tester-server", serverCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, false)); code != 0 {
			t.Fatalf("the configured issuance of tester-server: %d %s", code, out)
		}
		pemText, _ := s.certs.Get(ctx, "tester-server")
		c := parseChain(t, pemText)[0]
		if life := c.NotAfter.Sub(c.NotBefore); life > 31*24*time.Hour {
			t.Fatalf("tester-server lives %v; want the configured 30 days", life)
		}
	})

	t.Run("IssueCAGrantGivesABoundedSubCA", func(t *testing.T) {
		s.polkit.AddRule(t, "issue-ca-tester", principalRules(t, `certs_manage = ["tester-*"]
certs_issue = ["device-ca"]
certs_issue_ca = ["device-ca"]`))
		subCSR := csrText(t, pkix.Name{CommonName: "tester sub CA"}, nil)
		if out, code := call("CreateCertificate", "tester-subca", subCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "device-ca"}, true)); code != 0 {
			t.Fatalf("the granted sub-CA: %d %s", code, out)
		}
		pemText, _ := s.certs.Get(ctx, "tester-subca")
		sub := parseChain(t, pemText)[0]
		if !sub.IsCA || sub.MaxPathLen != 0 || !sub.MaxPathLenZero {
			t.Fatalf("the sub-CA is CA %v with path length %d (zero %v); want a CA that issues leaves only", sub.IsCA, sub.MaxPathLen, sub.MaxPathLenZero)
		}
		// The sub-CA's key is the caller's, not the one the configuration
		// binds to tester-subca: certd does not sign with it.
		out, code := call("CreateCertificate", "tester-leaf", leafCSR, optsText(map[string]string{"issuer": "local_ca", "issuer_cert": "tester-subca"}, false))
		if code == 0 {
			t.Fatalf("certd signed under a CA whose certificate is not for its configured key: %s", out)
		}
	})

	t.Run("ESTEnrollsOnlyConfiguredIDsWithTheirSubject", func(t *testing.T) {
		s.polkit.AddRule(t, "est-tester", principalRules(t, `certs_manage = ["tester-*"]`))
		out, code := call("CreateCertificate", "tester-leaf", leafCSR, optsText(map[string]string{"issuer": "est"}, false))
		refused(t, "EST enrollment of an unconfigured id", out, code, bus.ErrInvalidArgs, "not configured for EST issuance")
		out, code = call("CreateCertificate", "tester-est", leafCSR, optsText(map[string]string{"issuer": "est"}, false))
		refused(t, "EST enrollment of tester-est as edgeHub", out, code, bus.ErrInvalidArgs, "subject")
		good := csrText(t, pkix.Name{CommonName: "tester-est"}, nil)
		if out, code := call("CreateCertificate", "tester-est", good, optsText(map[string]string{"issuer": "est"}, false)); code != 0 {
			t.Fatalf("the configured EST enrollment: %d %s", code, out)
		}
		pemText, _ := s.certs.Get(ctx, "tester-est")
		if c := parseChain(t, pemText)[0]; c.Subject.CommonName != "tester-est" {
			t.Fatalf("EST issued %v", c.Subject)
		}
		if stored(t, "tester-leaf") {
			t.Fatal("a refused enrollment stored a certificate")
		}
	})

	t.Run("ESTRequestCarriesNoOtherNames", func(t *testing.T) {
		// A subjectAltName of kinds certd does not read (a directoryName, an
		// otherName such as a UPN) is no configured name either: the EST
		// server copies the request's subjectAltName into what it issues.
		s.polkit.AddRule(t, "est-names-tester", principalRules(t, `certs_manage = ["tester-*"]`))
		dirName, err := asn1.Marshal(pkix.Name{CommonName: "edgeHub"}.ToRDNSequence())
		if err != nil {
			t.Fatal(err)
		}
		upn, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte("admin@example.net")})
		otherName, _ := asn1.Marshal(struct {
			ID    asn1.ObjectIdentifier
			Value asn1.RawValue `asn1:"tag:0,explicit"`
		}{asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}, asn1.RawValue{FullBytes: upn}})
		for _, tc := range []struct {
			name string
			gn   asn1.RawValue
		}{
			{"otherName", asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: otherName[2:]}},
			{"directoryName", asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dirName}},
		} {
			name := tc.name
			san, err := asn1.Marshal([]asn1.RawValue{tc.gn})
			if err != nil {
				t.Fatal(err)
			}
			csr := csrTextOf(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "tester-est"},
				ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: san}}})
			out, code := call("CreateCertificate", "tester-est", csr, optsText(map[string]string{"issuer": "est"}, false))
			if code == 0 {
				pemText, _ := s.certs.Get(ctx, "tester-est")
				c := parseChain(t, pemText)[0]
				for _, e := range c.Extensions {
					if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
						t.Fatalf("EST issued tester-est with an %s subjectAltName %x the configuration does not give it", name, e.Value)
					}
				}
				continue
			}
			refused(t, "a "+name+" subjectAltName", out, code, bus.ErrInvalidArgs, "subjectAltName")
		}
	})

	t.Run("ESTRequestAsksNoPowerTheConfigurationDoesNotGive", func(t *testing.T) {
		// An EST server may copy what a request asks for into what it
		// issues under certd's credentials (the lab's does not, real ones
		// may): a CA certificate, certificate or CRL signing, OCSP signing
		// for the CA, name constraints. certd forwards no such request for
		// an id configured as a leaf.
		s.polkit.AddRule(t, "est-powers-tester", principalRules(t, `certs_manage = ["tester-*"]`))
		ext := func(oid asn1.ObjectIdentifier, v any) pkix.Extension {
			der, err := asn1.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return pkix.Extension{Id: oid, Value: der}
		}
		type basicConstraints struct {
			IsCA bool `asn1:"optional"`
		}
		keyUsage := func(bits ...int) asn1.BitString {
			b := asn1.BitString{Bytes: []byte{0}, BitLength: 7}
			for _, i := range bits {
				b.Bytes[0] |= 0x80 >> i
			}
			return b
		}
		var (
			oidBasic  = asn1.ObjectIdentifier{2, 5, 29, 19}
			oidKU     = asn1.ObjectIdentifier{2, 5, 29, 15}
			oidEKU    = asn1.ObjectIdentifier{2, 5, 29, 37}
			oidNC     = asn1.ObjectIdentifier{2, 5, 29, 30}
			serverEKU = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
			clientEKU = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
			ocspEKU   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}
		)
		for _, tc := range []struct {
			name string
			ext  pkix.Extension
		}{
			{"a CA certificate", ext(oidBasic, basicConstraints{IsCA: true})},
			{"certificate signing", ext(oidKU, keyUsage(0, 5))},
			{"CRL signing", ext(oidKU, keyUsage(6))},
			{"OCSP signing", ext(oidEKU, []asn1.ObjectIdentifier{serverEKU, ocspEKU})},
			{"name constraints", pkix.Extension{Id: oidNC, Value: []byte{0x30, 0x00}}},
		} {
			csr := csrTextOf(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "tester-est"}, ExtraExtensions: []pkix.Extension{tc.ext}})
			out, code := call("CreateCertificate", "tester-est", csr, optsText(map[string]string{"issuer": "est"}, false))
			refused(t, "a request for "+tc.name, out, code, bus.ErrInvalidArgs, tc.ext.Id.String())
		}
		// What a TLS leaf asks for is forwarded.
		csr := csrTextOf(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "tester-est"}, ExtraExtensions: []pkix.Extension{
			ext(oidBasic, basicConstraints{}), ext(oidKU, keyUsage(0, 2)), ext(oidEKU, []asn1.ObjectIdentifier{serverEKU, clientEKU})}})
		if out, code := call("CreateCertificate", "tester-est", csr, optsText(map[string]string{"issuer": "est"}, false)); code != 0 {
			t.Fatalf("a TLS leaf's request (basicConstraints CA:false, digitalSignature+keyEncipherment, serverAuth+clientAuth): %d %s", code, out)
		}
	})

	t.Run("ImportedCertificateDoesNotChooseTheESTSubject", func(t *testing.T) {
		// The caller may replace tester-est (certs.manage), but what certd
		// then enrolls under its EST credentials carries the configured
		// subject, not the one of the certificate the caller put there.
		s.polkit.AddRule(t, "est-import-tester", principalRules(t, `certs_manage = ["tester-*"]`))
		ca := testpki.NewCA(t, "attacker CA")
		forged := ca.Issue(t, "edgeHub", testpki.NewKey(t).Public(), &x509.Certificate{
			DNSNames: []string{"hub.example.net"}, NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
		if out, code := call("ImportCertificate", "tester-est", "'"+string(testpki.PEM(forged))+"'"); code != 0 {
			t.Fatalf("ImportCertificate tester-est: %d %s", code, out)
		}
		// Expired, so certd enrolls anew with its own EST credentials.
		out, code := call("EnsureCertificate", "tester-est")
		pemText, err := s.certs.Get(ctx, "tester-est")
		if err != nil {
			t.Fatal(err)
		}
		c := parseChain(t, pemText)[0]
		if c.Subject.CommonName != "tester-est" || len(c.DNSNames) != 0 {
			t.Fatalf("EST issued %v %v under certd's credentials for the caller's imported subject (EnsureCertificate: %d %s)", c.Subject, c.DNSNames, code, out)
		}
	})
}

// estChoicePolicy: two configured EST servers (each its own CA) and an id
// configured to enroll at the first under label "modules"; other-est is
// another id's server.
const estChoicePolicy = `
[est]
url = "%s/.well-known/est"
label = "modules"
trusted_certs = ["est-ca", "other-ca"]
username = "device-1"
password = "est-pass"

[preloaded_certs]
est-ca = "file://%s"
other-ca = "file://%s"

[cert_issuance.tester-est]
method = "est"
common_name = "tester-est"

[cert_issuance.other-est]
method = "est"
url = "%s/.well-known/est"
common_name = "other-est"
`

// TestESTServerAndLabelOfAnIDComeFromTheConfiguration: the EST server
// and label an id enrolls at are its CA; a caller who may have tester-est
// enrolled cannot send its request to another id's EST server or under
// another label (another CA profile of the same server).
func TestESTServerAndLabelOfAnIDComeFromTheConfiguration(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.SharedTempDir(t, "estchoice")
	users := []labest.User{{Name: "device-1", Password: "est-pass"}}
	url, caPEM, _ := labest.StartTestServer(t, labest.Config{Users: users, Labels: []string{"modules", "devices"}})
	otherURL, otherPEM, _ := labest.StartTestServer(t, labest.Config{Users: users})
	s := startStack(t, fmt.Sprintf(estChoicePolicy, url,
		writeShared(t, dir, "est-ca.pem", caPEM), writeShared(t, dir, "other-ca.pem", otherPEM), otherURL))
	ctx := ctxT(t)
	s.polkit.AddRule(t, "est-choice-tester", principalRules(t, `certs_manage = ["tester-*"]`))
	call := func(args ...string) (string, int) {
		argv := append([]string{"call", "--address", s.bus.Address, "--dest", certsapi.BusName,
			"--object-path", string(certsapi.ObjectPath), "--method", certsapi.Interface + "." + certsapi.MethodCreateCertificate}, args...)
		out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", argv...)
		return out + errOut, code
	}
	csr := csrText(t, pkix.Name{CommonName: "tester-est"}, nil)
	for _, tc := range []struct {
		name, option, value string
	}{
		{"AnotherIDsServer", "est_url", otherURL + "/.well-known/est"},
		{"AnotherLabel", "est_label", "devices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := call("tester-est", csr, optsText(map[string]string{"issuer": "est", tc.option: tc.value}, false))
			if code == 0 || !strings.Contains(out, bus.ErrInvalidArgs) || !strings.Contains(out, tc.option) {
				issuer := ""
				if pemText, err := s.certs.Get(ctx, "tester-est"); err == nil {
					issuer = parseChain(t, pemText)[0].Issuer.String()
				}
				t.Fatalf("enrolling tester-est with %s %q: exit %d, %s (issued by %q)\nwant %s naming %s", tc.option, tc.value, code, out, issuer, bus.ErrInvalidArgs, tc.option)
			}
		})
	}
	t.Run("TheConfiguredServerAndLabel", func(t *testing.T) {
		// Naming them is the same as leaving them out.
		out, code := call("tester-est", csr, optsText(map[string]string{"issuer": "est", "est_url": url + "/.well-known/est", "est_label": "modules"}, false))
		if code != 0 {
			t.Fatalf("the configured EST enrollment: %d %s", code, out)
		}
		pemText, _ := s.certs.Get(ctx, "tester-est")
		opensslVerify(t, pemText, string(caPEM))
	})
}

// TestCRLOfAnImportedCertificateIsNotFetched: certd looks the EST-issued
// certificates of configured ids up on their CRLs. A caller who may replace
// tester-est imports a certificate of its own making, whose CRL
// distribution point is its own URL and whose issuer (in the imported
// chain) signs a CRL revoking it: certd must not follow that URL (a path
// the caller wrote), nor believe the caller's CA that the certificate is
// revoked (which re-enrolls with a new key).
func TestCRLOfAnImportedCertificateIsNotFetched(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.SharedTempDir(t, "crlimport")
	estURL, estCA, _ := labest.StartTestServer(t, labest.Config{Users: []labest.User{{Name: "device-1", Password: "est-pass"}}})
	s := startStack(t, fmt.Sprintf(`
[est]
url = "%s/.well-known/est"
trusted_certs = ["est-ca"]
username = "device-1"
password = "est-pass"
crl_check_interval = "1s"

[preloaded_certs]
est-ca = "file://%s"

[cert_issuance.tester-est]
method = "est"
common_name = "tester-est"
`, estURL, writeShared(t, dir, "est-ca.pem", estCA)))
	s.polkit.AddRule(t, "crl-tester", principalRules(t, `certs_manage = ["tester-*"]`))

	ca := testpki.NewCA(t, "attacker CA", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign })
	var fetched atomic.Int32
	var crl atomic.Pointer[[]byte]
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		if der := crl.Load(); der != nil {
			w.Write(*der)
		}
	}))
	t.Cleanup(attacker.Close)
	forged := ca.Issue(t, "tester-est", testpki.NewKey(t).Public(), &x509.Certificate{
		CRLDistributionPoints: []string{attacker.URL + "/crl"}, NotAfter: time.Now().Add(12 * time.Hour)})
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: forged.SerialNumber, RevocationTime: time.Now()}}}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	crl.Store(&crlDER)
	argv := []string{"call", "--address", s.bus.Address, "--dest", certsapi.BusName, "--object-path", string(certsapi.ObjectPath),
		"--method", certsapi.Interface + "." + certsapi.MethodImportCertificate, "tester-est", "'" + string(testpki.PEM(forged, ca.Cert)) + "'"}
	if out, errOut, code := testenv.RunAs(t, testenv.OtherUser, nil, "gdbus", argv...); code != 0 {
		t.Fatalf("ImportCertificate tester-est: %d %s %s", code, out, errOut)
	}
	// Several CRL rounds (crl_check_interval 1 s).
	if testenv.WaitFor(5*time.Second, func() bool { return fetched.Load() > 0 }) {
		t.Fatalf("certd fetched the CRL of the imported certificate from the caller's URL %s/crl; its log:\n%s", attacker.URL, s.certd)
	}
}
