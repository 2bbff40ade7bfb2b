package superconfig

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/internal/label"
	keysconfig "github.com/edgev2/edgev2/keys/config"
)

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

// checkHTTPS says what is wrong with a cloud URL (EST, DPS), or "". It
// never echoes a password: a URL with a user:password@ part is shown
// redacted, one that does not parse (the password may be what breaks it)
// is not shown, nor one with an '@' that is no user:password@ part
// ("https//user:password@host": mistyped, the password is in its path).
func checkHTTPS(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a valid URL (not shown: it may hold a password)"
	case u.User != nil:
		return fmt.Sprintf("%q embeds credentials (user:password@); give them in their own settings", u.Redacted())
	case (u.Scheme != "https" || u.Host == "") && strings.Contains(raw, "@"):
		return "is not an https:// URL (not shown: what comes before its '@' may be a password)"
	case u.Scheme != "https" || u.Host == "":
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
		if err := c.bindLocalCA(r, p, "cert_issuance.local_ca", lc.Cert, lc.PK, idLocalCA); err != nil {
			return err
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
			if err := c.bindLocalCA(r, p, "edge_ca", ec.Cert, ec.PK, idEdgeCA); err != nil {
				return err
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
// bindLocalCA resolves the cert and pk settings of a local CA (under
// section) and binds that key to the CA in certd's config, unless certd
// issues the CA's certificate itself (it then signs with the key it made).
func (c *Config) bindLocalCA(r *ids, p *plan, section, cert, pk, id string) error {
	certID, err := c.certRef(r, section+".cert", cert, id)
	if err != nil {
		return err
	}
	keyID, err := c.keyRef(r, section+".pk", pk, id)
	if err != nil {
		return err
	}
	if _, issued := r.issued[certID]; !issued {
		p.certd.LocalCAs[certID] = &certsconfig.LocalCA{Key: keyID}
	}
	return nil
}

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
