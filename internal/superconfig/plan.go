package superconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	idconfig "github.com/edgev2/edgev2/identity/config"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/identity/connstr"
	"github.com/edgev2/edgev2/internal/config"
	"github.com/edgev2/edgev2/internal/label"
	"github.com/edgev2/edgev2/internal/tpm/ek"
	keysconfig "github.com/edgev2/edgev2/keys/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

// The services' state directories (systemd StateDirectory=).
const (
	keydHome      = "/var/lib/edgev2/keyd"
	certdHome     = "/var/lib/edgev2/certd"
	identitydHome = "/var/lib/edgev2/identityd"
	modrtdHome    = "/var/lib/edgev2/modrtd"

	defaultGlobalEndpoint = "https://global.azure-devices-provisioning.net"
	defaultTPMDevice      = "/dev/tpmrm0"
)

// plan is the super-config compiled to the services' configs, before
// serialisation.
type plan struct {
	keyd      keysconfig.Config
	certd     certsconfig.Config
	identityd idconfig.Config
	modrtd    rtconfig.Config
	secrets   map[string][]byte // key id -> raw bytes for secretKeyPath(id)
	// keyFrom and certFrom name the super-config setting behind each
	// preloaded id, for errors a daemon's parser finds.
	keyFrom, certFrom map[string]string
	// identity principals whose uid Compile must look up, by index into
	// identityd.Principals -> index into Config.Principals.
	lookupUID map[int]int
	// credentials are the secrets apply stores as systemd credentials, by
	// name; seal is how ([secrets] seal).
	credentials map[string]*Credential
	seal        string
}

func (c *Config) bad(key, problem, fix string) *config.Error {
	return &config.Error{File: c.path, Line: c.lines.line(key), Key: key, Problem: problem, Fix: fix}
}

var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// validate checks every setting and cross-reference, and that each compiled
// file is one its daemon accepts.
func (c *Config) validate() error {
	p, err := c.plan()
	if err != nil {
		return err
	}
	return c.checkWithDaemons(p)
}

func (c *Config) plan() (*plan, error) {
	if c.Hostname != "" && (len(c.Hostname) > 253 || !hostnamePattern.MatchString(c.Hostname)) {
		return nil, c.bad("hostname", fmt.Sprintf("%q is not a host name", c.Hostname), `use the device's DNS name or IP address, e.g. "edge-gw-1.example.net"`)
	}
	r := newIDs()
	p := &plan{lookupUID: map[int]int{}}
	if err := c.planKeys(r, p); err != nil {
		return nil, err
	}
	if err := c.planCerts(r, p); err != nil {
		return nil, err
	}
	if err := c.planIdentity(r, p); err != nil {
		return nil, err
	}
	if err := c.planRuntime(r, p); err != nil {
		return nil, err
	}
	if err := c.planWorkload(p); err != nil {
		return nil, err
	}
	if err := c.planPrincipals(p); err != nil {
		return nil, err
	}
	p.keyd.PreloadedKeys = r.keys
	if len(r.keys) == 0 {
		p.keyd.PreloadedKeys = nil
	}
	p.certd.PreloadedCerts = r.certs
	if len(r.certs) == 0 {
		p.certd.PreloadedCerts = nil
	}
	p.secrets = r.secretFiles
	p.keyFrom, p.certFrom = r.keyFrom, r.certFrom
	if err := c.planCredentials(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *Config) planKeys(r *ids, p *plan) error {
	k := c.Keys
	p.keyd = keysconfig.Config{Homedir: keydHome, PKCS11LibPath: k.PKCS11LibPath, PKCS11BaseSlot: k.PKCS11BaseSlot, PKCS11Sessions: k.PKCS11Sessions}
	if k.PKCS11LibPath != "" && !strings.HasPrefix(k.PKCS11LibPath, "/") {
		return c.bad("keys.pkcs11_lib_path", fmt.Sprintf("%q is not an absolute path", k.PKCS11LibPath), "use e.g. /usr/lib/softhsm/libsofthsm2.so")
	}
	if k.PKCS11BaseSlot != "" {
		if msg := c.checkPKCS11URI(k.PKCS11BaseSlot); msg != "" {
			return c.bad("keys.pkcs11_base_slot", msg, `set pkcs11_lib_path and use an RFC 7512 URI like "pkcs11:token=edgev2?pin-source=file:///etc/edgev2/pin"`)
		}
	}
	if k.PKCS11Sessions < 0 || k.PKCS11Sessions > 256 {
		return c.bad("keys.pkcs11_sessions", fmt.Sprintf("%d is out of range", k.PKCS11Sessions), "use 1..256, or leave it out for 8")
	}
	for _, id := range sortedKeys(c.PreloadedKeys) {
		uri, key := c.PreloadedKeys[id], "preloaded_keys."+id
		if err := keysconfig.ValidateID(id); err != nil {
			return c.bad(key, err.Error(), "use a key id of printable UTF-8")
		}
		switch {
		case isFileURI(uri):
			if msg := checkFileURI(uri); msg != "" {
				return c.bad(key, msg, `use "file:///path/to/key.pem"`)
			}
		case isPKCS11URI(uri):
			if msg := c.checkPKCS11URI(uri); msg != "" {
				return c.bad(key, msg, `use "pkcs11:token=...;object=<label>" and set [keys] pkcs11_lib_path`)
			}
		default:
			return c.bad(key, "unsupported URI scheme", `use "file:///..." or "pkcs11:..."`)
		}
		if err := r.addKey(c, key, id, uri); err != nil {
			return err
		}
		r.preloadedKeyDefined[id] = true
	}
	return nil
}

var spanPattern = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?%|[0-9]+(d|min|h|m|s))$`)

func (c *Config) autoRenew(key string, ar *AutoRenew) (*certsconfig.AutoRenew, error) {
	if ar == nil {
		return nil, nil
	}
	for name, v := range map[string]string{"threshold": ar.Threshold, "retry": ar.Retry} {
		if v != "" && !spanPattern.MatchString(strings.TrimSpace(v)) {
			return nil, c.bad(key+".auto_renew."+name, fmt.Sprintf("%q is neither a percentage nor a duration", v), `use "80%" or a time like "10d", "12h", "30min"`)
		}
	}
	return &certsconfig.AutoRenew{Threshold: ar.Threshold, Retry: ar.Retry, RotateKey: ar.RotateKey}, nil
}

func checkHTTPS(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Sprintf("%q is not an https:// URL", raw)
	}
	return ""
}

func (c *Config) planCerts(r *ids, p *plan) error {
	p.certd = certsconfig.Config{Homedir: certdHome, Issuance: map[string]*certsconfig.Issuance{}}
	ci := c.CertIssuance
	for _, id := range sortedKeys(c.PreloadedCerts) {
		uri, key := c.PreloadedCerts[id], "preloaded_certs."+id
		if msg := label.ValidateID("certificate id", id); msg != "" {
			return c.bad(key, msg, "use printable UTF-8")
		}
		if msg := checkFileURI(uri); msg != "" {
			return c.bad(key, msg, `use "file:///etc/edgev2/ca.pem"`)
		}
		if err := r.addCert(c, key, id, uri); err != nil {
			return err
		}
	}
	// Issued certificates first: other settings may name them.
	for _, id := range sortedKeys(ci.Certs) {
		key := "cert_issuance.certs." + id
		if msg := label.ValidateID("certificate id", id); msg != "" {
			return c.bad(key, msg, "use printable UTF-8")
		}
		if _, ok := r.certs[id]; ok {
			return c.bad(key, "this id is also in [preloaded_certs]; a preloaded certificate cannot be issued", "remove one of the two")
		}
		is := ci.Certs[id]
		if is == nil {
			continue
		}
		keyID := is.KeyID
		if keyID == "" {
			keyID = id
		}
		r.issued[id] = keyID
	}
	if id := idEdgeCA; c.EdgeCA != nil && c.EdgeCA.Method != "" {
		if _, ok := r.issued[id]; ok {
			return c.bad("edge_ca", "[cert_issuance.certs.edge-ca] and [edge_ca] both issue the edge CA", "keep [edge_ca]")
		}
		r.issued[id] = id
	}
	// certd signs for a CA only with the key bound to it here (or the
	// key_id of a CA it issues itself): never a key a caller names.
	p.certd.LocalCAs = map[string]*certsconfig.LocalCA{}
	if lc := ci.LocalCA; lc != nil {
		certID, err := c.certRef(r, "cert_issuance.local_ca.cert", lc.Cert, idLocalCA)
		if err != nil {
			return err
		}
		keyID, err := c.keyRef(r, "cert_issuance.local_ca.pk", lc.PK, idLocalCA)
		if err != nil {
			return err
		}
		if _, issued := r.issued[certID]; !issued {
			p.certd.LocalCAs[certID] = &certsconfig.LocalCA{Key: keyID}
		}
	}
	if est := ci.EST; est != nil {
		key := "cert_issuance.est"
		if est.URL != "" {
			if msg := checkHTTPS(est.URL); msg != "" {
				return c.bad(key+".url", msg+" (EST needs TLS)", "use https://host/.well-known/est")
			}
		}
		e := &certsconfig.ESTDefaults{URL: est.URL, Username: est.Username}
		if (est.Username == "") != (est.Password == "") {
			return c.bad(key+".username", "username and password go together", "set both or neither")
		}
		for i, tc := range est.TrustedCerts {
			id, err := c.certRef(r, fmt.Sprintf("%s.trusted_certs[%d]", key, i), tc, fmt.Sprintf("est-trusted-%d", i+1))
			if err != nil {
				return err
			}
			e.TrustedCerts = append(e.TrustedCerts, id)
		}
		if (est.IdentityCert == "") != (est.IdentityPK == "") {
			return c.bad(key+".identity_cert", "identity_cert and identity_pk go together", "set both or neither")
		}
		if (est.BootstrapIdentityCert == "") != (est.BootstrapIdentityPK == "") {
			return c.bad(key+".bootstrap_identity_cert", "bootstrap_identity_cert and bootstrap_identity_pk go together", "set both or neither")
		}
		if est.BootstrapIdentityCert != "" && est.IdentityCert == "" {
			return c.bad(key+".identity_cert", "a bootstrap identity only enrolls the EST identity, which is not set", `set identity_cert = "est-id" and identity_pk = "est-id" (certd enrolls them)`)
		}
		if est.IdentityCert != "" {
			var err error
			// The EST identity is enrolled by certd with the bootstrap
			// identity: then it is an id certd owns, not a file.
			if est.BootstrapIdentityCert != "" && !isFileURI(est.IdentityCert) {
				if msg := label.ValidateID("certificate id", est.IdentityCert); msg != "" {
					return c.bad(key+".identity_cert", msg, `use an id such as "est-id": certd enrolls it with the bootstrap identity`)
				}
				if isFileURI(est.IdentityPK) || isPKCS11URI(est.IdentityPK) {
					return c.bad(key+".identity_pk", "certd enrolls the EST identity, so its key is one certd makes, not a URI", `use the same id as identity_cert, e.g. "est-id"`)
				}
				if err := keysconfig.ValidateID(est.IdentityPK); err != nil {
					return c.bad(key+".identity_pk", err.Error(), `use an id such as "est-id"`)
				}
				e.IdentityCert, e.IdentityKey = est.IdentityCert, est.IdentityPK
			} else {
				if e.IdentityCert, err = c.certRef(r, key+".identity_cert", est.IdentityCert, idESTIdentity); err != nil {
					return err
				}
				if e.IdentityKey, err = c.keyRef(r, key+".identity_pk", est.IdentityPK, idESTIdentity); err != nil {
					return err
				}
			}
			if est.BootstrapIdentityCert != "" {
				if e.BootstrapIdentityCert, err = c.certRef(r, key+".bootstrap_identity_cert", est.BootstrapIdentityCert, idESTBootstrap); err != nil {
					return err
				}
				if e.BootstrapIdentityKey, err = c.keyRef(r, key+".bootstrap_identity_pk", est.BootstrapIdentityPK, idESTBootstrap); err != nil {
					return err
				}
			}
		}
		if e.URL != "" || e.Username != "" || e.IdentityCert != "" || len(e.TrustedCerts) > 0 {
			p.certd.EST = *e
		}
		if _, err := c.autoRenew(key, est.AutoRenew); err != nil {
			return err
		}
	}
	for _, id := range sortedKeys(ci.Certs) {
		key := "cert_issuance.certs." + id
		is := ci.Certs[id]
		if is == nil {
			continue
		}
		out, err := c.issuance(key, is.Method, is.URL, is.AutoRenew)
		if err != nil {
			return err
		}
		out.KeyID, out.KeyAlgorithms, out.CommonName, out.Organization = is.KeyID, is.KeyAlgorithms, is.CommonName, is.Organization
		out.DNSNames, out.ExpiryDays, out.Expiry, out.CA = is.DNSNames, is.ExpiryDays, is.Expiry, is.CA
		if is.Expiry != "" && is.ExpiryDays != 0 {
			return c.bad(key+".expiry", "set expiry or expiry_days, not both", "keep one")
		}
		if is.ExpiryDays < 0 {
			return c.bad(key+".expiry_days", "negative", "use a positive number of days")
		}
		p.certd.Issuance[id] = out
	}
	if ec := c.EdgeCA; ec != nil {
		key := "edge_ca"
		switch {
		case ec.Method != "" && (ec.Cert != "" || ec.PK != ""):
			return c.bad(key+".method", "set either cert and pk (a CA you bring) or method (a CA certd issues), not both", "keep one")
		case ec.Method != "":
			out, err := c.issuance(key, ec.Method, ec.URL, ec.AutoRenew)
			if err != nil {
				return err
			}
			out.CA, out.ExpiryDays, out.CommonName = true, ec.ExpiryDays, ec.CommonName
			if out.CommonName == "" {
				out.CommonName = "edgev2 Edge CA"
				if c.Hostname != "" && len(out.CommonName)+1+len(c.Hostname) <= 64 { // the X.520 CN limit
					out.CommonName += " " + c.Hostname
				}
			}
			if ec.ExpiryDays < 0 {
				return c.bad(key+".expiry_days", "negative", "use a positive number of days")
			}
			p.certd.Issuance[idEdgeCA] = out
		default:
			if ec.Cert == "" || ec.PK == "" {
				return c.bad(key+".cert", "[edge_ca] needs cert and pk, or method", `set cert = "file:///..." and pk = "file:///...", or method = "self_signed"`)
			}
			if ec.URL != "" || ec.AutoRenew != nil || ec.CommonName != "" || ec.ExpiryDays != 0 {
				return c.bad(key+".cert", "common_name, expiry_days, url and auto_renew only apply with method", "remove them or set method")
			}
			// The same references planRuntime resolves for modrtd.
			certID, err := c.certRef(r, "edge_ca.cert", ec.Cert, idEdgeCA)
			if err != nil {
				return err
			}
			keyID, err := c.keyRef(r, "edge_ca.pk", ec.PK, idEdgeCA)
			if err != nil {
				return err
			}
			if _, issued := r.issued[certID]; !issued {
				p.certd.LocalCAs[certID] = &certsconfig.LocalCA{Key: keyID}
			}
		}
	} else {
		// modrtd makes its quickstart edge CA (self-signed, key and
		// certificate "edgev2-edge-ca") and issues modules' certificates under it.
		p.certd.LocalCAs[idQuickstartEdgeCA] = &certsconfig.LocalCA{Key: idQuickstartEdgeCA}
	}
	if len(p.certd.Issuance) == 0 {
		p.certd.Issuance = nil
	}
	if len(p.certd.LocalCAs) == 0 {
		p.certd.LocalCAs = nil
	}
	return nil
}

// issuance checks the method and where it issues from.
func (c *Config) issuance(key, method, estURL string, ar *AutoRenew) (*certsconfig.Issuance, error) {
	out := &certsconfig.Issuance{Method: method}
	switch method {
	case "est":
		est := c.CertIssuance.EST
		if estURL == "" && (est == nil || est.URL == "") {
			return nil, c.bad(key+".url", "method est needs the EST server's URL", "set url here or in [cert_issuance.est]")
		}
		if estURL != "" {
			if msg := checkHTTPS(estURL); msg != "" {
				return nil, c.bad(key+".url", msg+" (EST needs TLS)", "use https://host/.well-known/est")
			}
		}
		out.URL = estURL
		if ar == nil && est != nil {
			ar = est.AutoRenew // the EST default
		}
	case "local_ca":
		if c.CertIssuance.LocalCA == nil {
			return nil, c.bad(key+".method", "method local_ca needs [cert_issuance.local_ca]", "add [cert_issuance.local_ca] with cert and pk")
		}
		out.IssuerCert, out.IssuerKey = idLocalCA, idLocalCA
		if lc := c.CertIssuance.LocalCA; !isFileURI(lc.Cert) {
			out.IssuerCert = lc.Cert
		}
		if lc := c.CertIssuance.LocalCA; !isFileURI(lc.PK) && !isPKCS11URI(lc.PK) {
			out.IssuerKey = lc.PK
		}
	case "self_signed":
		if estURL != "" {
			return nil, c.bad(key+".url", "url only applies to method est", "remove it")
		}
	case "":
		return nil, c.bad(key+".method", "not set", `set method = "est", "local_ca" or "self_signed"`)
	default:
		return nil, c.bad(key+".method", fmt.Sprintf("unknown method %q", method), `use "est", "local_ca" or "self_signed"`)
	}
	var err error
	if out.AutoRenew, err = c.autoRenew(key, ar); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Config) planIdentity(r *ids, p *plan) error {
	pr := c.Provisioning
	out := idconfig.Config{Hostname: c.Hostname, Homedir: identitydHome}
	ip := &out.Provisioning
	ip.Source = pr.Source
	wrongSource := func(key, src string) error {
		return c.bad(key, fmt.Sprintf("only used with source = %q, but source is %q", src, ip.Source), "remove it or change source")
	}
	switch pr.Source {
	case "", "none":
		ip.Source = "none"
		for _, s := range []struct {
			key string
			set bool
		}{{"provisioning.connection_string", pr.ConnectionString != ""}, {"provisioning.iothub_hostname", pr.IoTHubHostname != ""},
			{"provisioning.device_id", pr.DeviceID != ""}, {"provisioning.authentication", pr.Authentication != nil},
			{"provisioning.id_scope", pr.IDScope != ""}, {"provisioning.attestation", pr.Attestation != nil}} {
			if s.set {
				return c.bad(s.key, fmt.Sprintf("set, but provisioning source is %q", ip.Source), `set source = "manual" or "dps", or remove it`)
			}
		}
	case "manual":
		if pr.Attestation != nil {
			return wrongSource("provisioning.attestation", "dps")
		}
		if pr.IDScope != "" || pr.GlobalEndpoint != "" {
			return wrongSource("provisioning.id_scope", "dps")
		}
		if err := c.planManual(r, ip); err != nil {
			return err
		}
	case "dps":
		if pr.Authentication != nil {
			return wrongSource("provisioning.authentication", "manual")
		}
		if pr.ConnectionString != "" || pr.IoTHubHostname != "" || pr.DeviceID != "" {
			return wrongSource("provisioning.iothub_hostname", "manual")
		}
		if err := c.planDPS(r, ip, &out); err != nil {
			return err
		}
	default:
		return c.bad("provisioning.source", fmt.Sprintf("unknown source %q", pr.Source), `use "manual", "dps" or "none"`)
	}
	if a := ip.Attestation; c.TPM != nil && (a == nil || a.Method != "tpm") {
		return c.bad("tpm", "[tpm] is only used by DPS TPM attestation", `remove it, or set [provisioning.attestation] method = "tpm"`)
	}
	cl := c.Cloud
	if cl.TimeoutS < 0 || cl.RetryMaxS < 0 || cl.TokenTTLS < 0 {
		return c.bad("cloud", "negative timeout, retry or TTL", "use positive seconds")
	}
	ic := idconfig.Cloud{TimeoutS: cl.TimeoutS, RetryMaxS: cl.RetryMaxS, TokenTTLS: cl.TokenTTLS, DPSAPIVersion: cl.DPSAPIVersion}
	for i, tc := range cl.TrustedCerts {
		id, err := c.certRef(r, fmt.Sprintf("cloud.trusted_certs[%d]", i), tc, fmt.Sprintf("cloud-trusted-%d", i+1))
		if err != nil {
			return err
		}
		ic.TrustedCerts = append(ic.TrustedCerts, id)
	}
	out.Cloud = ic // written only when set (omitempty)
	p.identityd = out
	return nil
}

func (c *Config) planManual(r *ids, ip *idconfig.Provisioning) error {
	pr := c.Provisioning
	ip.GatewayHostname = pr.GatewayHostname
	if pr.ConnectionString != "" {
		if pr.IoTHubHostname != "" || pr.DeviceID != "" || pr.Authentication != nil {
			return c.bad("provisioning.connection_string", "a connection string carries hub, device and key; iothub_hostname, device_id and [provisioning.authentication] conflict with it",
				"use either connection_string or iothub_hostname + device_id + [provisioning.authentication]")
		}
		cs, err := connstr.Parse(pr.ConnectionString) // its errors never echo the key
		if err != nil {
			return c.bad("provisioning.connection_string", err.Error(), `use "HostName=<hub>;DeviceId=<id>;SharedAccessKey=<base64>"`)
		}
		if len(cs.SharedAccessKey) == 0 {
			return c.bad("provisioning.connection_string", "it has no SharedAccessKey", "use a SAS connection string, or X.509 with iothub_hostname, device_id and [provisioning.authentication]")
		}
		// planCredentials moves it into a credential.
		return nil
	}
	if pr.IoTHubHostname == "" {
		return c.bad("provisioning.iothub_hostname", "manual provisioning needs iothub_hostname and device_id, or connection_string", `set iothub_hostname = "<hub>.azure-devices.net"`)
	}
	if pr.DeviceID == "" {
		return c.bad("provisioning.device_id", "manual provisioning needs iothub_hostname and device_id, or connection_string", "set device_id to the device's id in IoT Hub")
	}
	ip.IoTHubHostname, ip.DeviceID = pr.IoTHubHostname, pr.DeviceID
	a := pr.Authentication
	key := "provisioning.authentication"
	if a == nil {
		return c.bad(key, "missing", `add [provisioning.authentication] with method = "sas" or "x509"`)
	}
	out := &idconfig.Authentication{Method: a.Method}
	switch a.Method {
	case "sas":
		if a.DeviceIDPK == nil {
			return c.bad(key+".device_id_pk", "method sas needs the device's SAS key", `set device_id_pk = { value = "<base64>" } or { uri = "file:///..." }`)
		}
		if a.IdentityCert != "" || a.IdentityPK != "" {
			return c.bad(key+".identity_cert", "only used with method x509", "remove it")
		}
		id, err := c.symmetricKey(r, key+".device_id_pk", a.DeviceIDPK, idDevice, false)
		if err != nil {
			return err
		}
		out.DeviceIDPK = id
	case "x509":
		if a.DeviceIDPK != nil {
			return c.bad(key+".device_id_pk", "only used with method sas", "use identity_cert and identity_pk")
		}
		cert, pk, err := c.x509Identity(r, key, a.IdentityCert, a.IdentityPK)
		if err != nil {
			return err
		}
		out.DeviceIDCert, out.DeviceIDPK = cert, pk
	case "":
		return c.bad(key+".method", "not set", `set method = "sas" or "x509"`)
	default:
		return c.bad(key+".method", fmt.Sprintf("unknown method %q", a.Method), `use "sas" or "x509"`)
	}
	ip.Authentication = out
	return nil
}

// x509Identity resolves identity_cert and identity_pk; the key may be left
// out when the certificate is issued (it is the issuance's key).
func (c *Config) x509Identity(r *ids, key, cert, pk string) (certID, keyID string, err error) {
	if cert == "" {
		return "", "", c.bad(key+".identity_cert", "method x509 needs identity_cert", `set identity_cert = "file:///etc/edgev2/device-id.pem", or the id of a certificate in [cert_issuance.certs]`)
	}
	if certID, err = c.certRef(r, key+".identity_cert", cert, idDevice); err != nil {
		return "", "", err
	}
	if k, ok := r.issued[certID]; ok && pk == "" {
		return certID, k, nil
	}
	if pk == "" {
		return "", "", c.bad(key+".identity_pk", "method x509 needs identity_pk with a certificate that is not issued here", `set identity_pk = "file:///etc/edgev2/device-id.key.pem" or a pkcs11: URI`)
	}
	keyID, err = c.keyRef(r, key+".identity_pk", pk, idDevice)
	return certID, keyID, err
}

func (c *Config) planDPS(r *ids, ip *idconfig.Provisioning, out *idconfig.Config) error {
	pr := c.Provisioning
	ip.GlobalEndpoint, ip.IDScope, ip.Payload = pr.GlobalEndpoint, pr.IDScope, pr.Payload
	if ip.GlobalEndpoint == "" {
		ip.GlobalEndpoint = defaultGlobalEndpoint
	}
	if msg := checkHTTPS(ip.GlobalEndpoint); msg != "" {
		return c.bad("provisioning.global_endpoint", msg, "use "+defaultGlobalEndpoint)
	}
	if pr.IDScope == "" {
		return c.bad("provisioning.id_scope", "source dps needs the DPS instance's ID scope", `copy it from the DPS instance's overview, e.g. id_scope = "0ne00000000"`)
	}
	if pr.Payload != "" && !json.Valid([]byte(pr.Payload)) {
		return c.bad("provisioning.payload", "not valid JSON", `write a JSON object, e.g. payload = '{"modelId": "dtmi:com:example;1"}'`)
	}
	a := pr.Attestation
	key := "provisioning.attestation"
	if a == nil {
		return c.bad(key, "missing", `add [provisioning.attestation] with method = "symmetric_key", "x509" or "tpm"`)
	}
	att := &idconfig.Attestation{Method: a.Method, RegistrationID: a.RegistrationID}
	notFor := func(field string) error {
		return c.bad(key+"."+field, fmt.Sprintf("not used with method %q", a.Method), "remove it")
	}
	switch a.Method {
	case "symmetric_key":
		if a.RegistrationID == "" {
			return c.bad(key+".registration_id", "method symmetric_key needs the enrollment's registration id", "set registration_id")
		}
		if a.IdentityCert != "" || a.IdentityPK != "" {
			return notFor("identity_cert")
		}
		if (a.SymmetricKey == nil) == (a.GroupKey == nil) {
			return c.bad(key+".symmetric_key", "set exactly one of symmetric_key (individual enrollment) and group_key (group enrollment)", `set symmetric_key = { value = "<base64>" }`)
		}
		var err error
		if a.SymmetricKey != nil {
			att.SymmetricKey, err = c.symmetricKey(r, key+".symmetric_key", a.SymmetricKey, idDevice, false)
		} else {
			att.GroupKey, err = c.symmetricKey(r, key+".group_key", a.GroupKey, idGroupKey, true)
		}
		if err != nil {
			return err
		}
	case "x509":
		if a.SymmetricKey != nil || a.GroupKey != nil {
			return notFor("symmetric_key")
		}
		cert, pk, err := c.x509Identity(r, key, a.IdentityCert, a.IdentityPK)
		if err != nil {
			return err
		}
		att.IdentityCert, att.IdentityPK = cert, pk
	case "tpm":
		if a.SymmetricKey != nil || a.GroupKey != nil {
			return notFor("symmetric_key")
		}
		if a.IdentityCert != "" || a.IdentityPK != "" {
			return notFor("identity_cert")
		}
		t := TPM{Device: defaultTPMDevice}
		if c.TPM != nil {
			t = *c.TPM
		}
		switch {
		case t.Device != "" && t.Address != "":
			return c.bad("tpm.address", "set device or address, not both", "keep one")
		case t.Device == "" && t.Address == "":
			t.Device = defaultTPMDevice
		case t.Device != "" && !strings.HasPrefix(t.Device, "/"):
			return c.bad("tpm.device", fmt.Sprintf("%q is not an absolute path", t.Device), `use "/dev/tpmrm0"`)
		case t.Address != "":
			if _, port, ok := strings.Cut(t.Address, ":"); !ok || port == "" {
				return c.bad("tpm.address", fmt.Sprintf("%q is not host:port", t.Address), `use e.g. "127.0.0.1:2321" (swtpm's server port)`)
			}
		}
		if t.AuthKeyHandle != "" {
			v, err := strconv.ParseUint(t.AuthKeyHandle, 0, 32)
			if err != nil || v < 0x81000000 || v > 0x817fffff {
				return c.bad("tpm.auth_key_handle", fmt.Sprintf("%q is not a persistent handle in the owner's range", t.AuthKeyHandle), `use a handle in 0x81000000-0x817fffff, e.g. "0x81000100" (the default)`)
			}
		}
		if _, err := ek.ParseTemplate(t.EKTemplate); err != nil {
			return c.bad("tpm.ek_template", err.Error(), `use "tcg" or "azure-sdk", or leave it out to follow the TPM's EK certificate`)
		}
		out.TPM = idconfig.TPMConfig{Device: t.Device, Address: t.Address, AuthKeyHandle: t.AuthKeyHandle, EKTemplate: t.EKTemplate}
		if h := t.HierarchyAuthorization; h != nil && (h.Endorsement != "" || h.Owner != "") {
			out.TPM.HierarchyAuthorization = &idconfig.HierarchyAuthorization{Endorsement: h.Endorsement, Owner: h.Owner}
		}
	case "":
		return c.bad(key+".method", "not set", `set method = "symmetric_key", "x509" or "tpm"`)
	default:
		return c.bad(key+".method", fmt.Sprintf("unknown method %q", a.Method), `use "symmetric_key", "x509" or "tpm"`)
	}
	if o := a.OperationalCert; o != nil {
		checked := *o
		if err := idconfig.CheckOperationalCert(&checked); err != nil {
			var ce *idconfig.ConfigError
			if errors.As(err, &ce) {
				return c.bad(ce.Key, ce.Problem, ce.Fix)
			}
			return err
		}
		att.OperationalCert = &idconfig.OperationalCert{CertID: o.CertID, KeyID: o.KeyID, KeyType: o.KeyType, RenewThreshold: o.RenewThreshold, TrustBundleID: o.TrustBundleID}
	}
	ip.Attestation = att
	return nil
}

func (c *Config) planRuntime(r *ids, p *plan) error {
	rt := c.Runtime
	out := rtconfig.Config{Homedir: modrtdHome, Containerd: rt.ContainerdAddress, Namespace: rt.Namespace, RegistryCAFiles: rt.RegistryCAFiles}
	if rt.ContainerdAddress != "" && !strings.HasPrefix(rt.ContainerdAddress, "/") {
		return c.bad("runtime.containerd_address", fmt.Sprintf("%q is not an absolute socket path", rt.ContainerdAddress), "use /run/containerd/containerd.sock")
	}
	if rt.TrustBundle != "" {
		id, err := c.certRef(r, "runtime.trust_bundle", rt.TrustBundle, "trust-bundle")
		if err != nil {
			return err
		}
		out.TrustBundle = id
	}
	for i, f := range rt.RegistryCAFiles {
		if !strings.HasPrefix(f, "/") {
			return c.bad(fmt.Sprintf("runtime.registry_ca_files[%d]", i), fmt.Sprintf("%q is not an absolute path", f), "use an absolute path to a PEM file")
		}
	}
	if rt.ForbiddenBindPrefixes != nil || rt.AllowPrivileged {
		return c.bad("runtime.forbidden_bind_prefixes", "the module policy is now an allowlist; forbidden_bind_prefixes and allow_privileged are gone",
			"remove them; allow what modules need per module in [[runtime.policy.allow]] (docs/config.md)")
	}
	// The runtime's own validation of [policy], under the super-config's keys.
	probe := rtconfig.Config{Homedir: modrtdHome, Policy: rt.Policy}
	if err := probe.ValidatePolicy("config.toml"); err != nil {
		var ce *rtconfig.ConfigError
		if errors.As(err, &ce) {
			return c.bad("runtime."+ce.Key, ce.Problem, strings.ReplaceAll(ce.Fix, "[[policy.allow]]", "[[runtime.policy.allow]]"))
		}
		return err
	}
	hostNet := append(append([]string(nil), rt.AllowHostNetwork...), rt.Policy.AllowHostNetwork...)
	if len(rt.Policy.ReadOnlyBinds) > 0 || len(rt.Policy.Allow) > 0 || len(hostNet) > 0 {
		out.Policy = rtconfig.PolicyConfig{ReadOnlyBinds: rt.Policy.ReadOnlyBinds, Allow: rt.Policy.Allow, AllowHostNetwork: hostNet}
	}
	for i, m := range rt.AllowHostNetwork {
		if err := modspec.ValidateName(m); err != nil {
			return c.bad(fmt.Sprintf("runtime.allow_host_network[%d]", i), err.Error(), "list module names")
		}
	}
	netCfg := rtconfig.NetworkConfig{}
	if n := rt.Network; n != nil {
		netCfg = rtconfig.NetworkConfig{Name: n.Name, Bridge: n.Bridge, Subnet: n.Subnet, PluginDirs: n.CNIPluginDirs, StateDir: n.StateDir}
		if err := netCfg.Validate(); err != nil {
			return c.bad("runtime."+err.Key, err.Problem, err.Fix)
		}
		out.Network = netCfg
	}
	if ec := c.EdgeCA; ec != nil {
		if ec.Method != "" {
			out.EdgeCACert, out.EdgeCAKey = idEdgeCA, idEdgeCA
		} else {
			var err error
			if out.EdgeCACert, err = c.certRef(r, "edge_ca.cert", ec.Cert, idEdgeCA); err != nil {
				return err
			}
			if out.EdgeCAKey, err = c.keyRef(r, "edge_ca.pk", ec.PK, idEdgeCA); err != nil {
				return err
			}
		}
	}
	policy := rtpolicy.FromConfig(&probe)
	policy.Static = true
	seen := map[string]string{}
	check := func(key string, m Module) error {
		if err := modspec.ValidateName(m.Name); err != nil {
			return c.bad(key+".name", err.Error(), "use a letter or digit, then letters, digits, '_', '.' or '-'")
		}
		if prev, ok := seen[m.Name]; ok {
			return c.bad(key+".name", fmt.Sprintf("module %q is also %s", m.Name, prev), "give each module its own name")
		}
		seen[m.Name] = key
		if strings.TrimSpace(m.Spec) == "" {
			return c.bad(key+".spec", "missing", `set spec = '''{"name": "...", "type": "docker", "config": {"settings": {"image": "..."}}}'''`)
		}
		s, err := modspec.ParseSpec([]byte(m.Spec))
		if err != nil {
			return c.bad(key+".spec", err.Error(), "write a ModuleSpec JSON (docs/modules.md)")
		}
		if s.Name == "" {
			s.Name = m.Name
		}
		// The runtime's own check of binds and privileges, run now so a
		// forbidden bind is refused at apply time rather than at start.
		mp := policy
		mp.AllowHostNetwork = slices.Contains(rt.AllowHostNetwork, m.Name) || slices.Contains(rt.Policy.AllowHostNetwork, m.Name)
		if _, err := mp.Admit(s, rtpolicy.Extra{ImageEntrypoint: []string{"/entrypoint"}, Network: netCfg.Name}); err != nil {
			return c.bad(key+".spec", err.Error(), "remove the bind, privilege or host network, or allow it for this module in [[runtime.policy.allow]] or [runtime] allow_host_network (docs/modules.md)")
		}
		return nil
	}
	if a := c.Agent; a != nil {
		m := *a
		if m.Name == "" {
			m.Name = "edgeAgent"
		}
		if err := check("agent", m); err != nil {
			return err
		}
		mm, err := c.sealRegistryPassword(p, "agent.spec", m)
		if err != nil {
			return err
		}
		out.Agent = &mm
	}
	for i, m := range c.Modules {
		if err := check(fmt.Sprintf("modules[%d]", i), m); err != nil {
			return err
		}
		mm, err := c.sealRegistryPassword(p, fmt.Sprintf("modules[%d].spec", i), m)
		if err != nil {
			return err
		}
		out.Modules = append(out.Modules, mm)
	}
	p.modrtd = out
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
