package superconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	idconfig "github.com/edgev2/edgev2/identity/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// ServicesRulesPath is where the services' grants to each other are
// installed. It is compiled from the configuration like the principals'
// rules: each service may touch exactly the key and certificate ids its
// own configuration names, never every id.
const ServicesRulesPath = "/etc/polkit-1/rules.d/50-edgev2-services.rules"

// ServiceGrant is what one service's user may do in Keys and Certificates.
// Every list holds exact ids. keys.read is granted on every key id the
// service uses, manages or exports.
type ServiceGrant struct {
	Service string // the daemon, for the comment
	User    string
	Why     string // one line: what the ids are

	KeysUse     []string
	KeysManage  []string
	KeysExport  []string
	CertsRead   []string
	CertsManage []string
}

// nextKeySuffix names the key certd makes while it rotates one
// (certs/renew.go): it creates, uses and then moves it over the old one.
const nextKeySuffix = ".next"

// CertdGrant is certd's grant for its configuration: the keys of the
// certificates it issues and renews (and their rotation keys), the issuer
// keys it signs with, its EST identities, and, when modrtd runs (rt not
// nil), the edge CA key with which certd signs modules' certificates for
// modrtd (the configured one, or the quickstart CA's that modrtd makes). A
// bus caller's own keys are not certd's: CreateCertificate with issuer
// self_signed signs only with a key certd is granted.
func CertdGrant(c *certsconfig.Config, rt *rtconfig.Config) ServiceGrant {
	g := ServiceGrant{Service: "edgev2-certd", User: certsUser,
		Why: "the keys of the certificates it issues and renews, the issuer and edge CA keys it signs with, its EST identities"}
	for _, id := range sortedKeys(c.Issuance) {
		is := c.Issuance[id]
		if is == nil {
			continue
		}
		keyID := is.KeyID
		if keyID == "" {
			keyID = id
		}
		g.KeysManage = append(g.KeysManage, keyID, keyID+nextKeySuffix)
		g.KeysUse = append(g.KeysUse, keyID, keyID+nextKeySuffix)
		if is.IssuerKey != "" {
			g.KeysUse = append(g.KeysUse, is.IssuerKey)
		}
	}
	// The keys the configuration binds to local CAs ([local_ca.<cert id>]):
	// certd signs for those CAs with them, and with nothing a caller names.
	for _, id := range sortedKeys(c.LocalCAs) {
		if ca := c.LocalCAs[id]; ca != nil && ca.Key != "" {
			g.KeysUse = append(g.KeysUse, ca.Key)
		}
	}
	if e := c.EST; e.IdentityKey != "" {
		g.KeysUse = append(g.KeysUse, e.IdentityKey)
		if e.BootstrapIdentityKey != "" {
			// certd enrolls the EST identity with the bootstrap one:
			// it makes that key.
			g.KeysManage = append(g.KeysManage, e.IdentityKey)
			g.KeysUse = append(g.KeysUse, e.BootstrapIdentityKey)
		}
	}
	if rt != nil {
		edgeCAKey := rt.EdgeCAKey
		if edgeCAKey == "" {
			edgeCAKey = rtconfig.QuickstartEdgeCA
		}
		g.KeysUse = append(g.KeysUse, edgeCAKey)
	}
	g.normalize()
	return g
}

// IdentitydGrant is identityd's grant for its configuration: the device's
// identity key (SAS key, group key or X.509 key), the module-key master,
// the key it imports from a connection string, and the identity and trust
// certificates it reads (and has issued).
func IdentitydGrant(c *idconfig.Config) ServiceGrant {
	g := ServiceGrant{Service: "edgev2-identityd", User: identityUser,
		Why: "the device identity keys, the module-key master, its identity and trust certificates"}
	master := c.MasterKey
	if master == "" {
		master = idconfig.DefaultMasterKey
	}
	g.KeysUse = append(g.KeysUse, master)
	g.KeysManage = append(g.KeysManage, master)
	g.KeysExport = append(g.KeysExport, master)
	p := c.Provisioning
	if p.ConnectionString != "" || p.ConnectionStringCredential != "" {
		g.KeysUse = append(g.KeysUse, idconfig.ConnStringKeyID)
		g.KeysManage = append(g.KeysManage, idconfig.ConnStringKeyID)
	}
	if a := p.Authentication; a != nil {
		g.KeysUse = append(g.KeysUse, a.DeviceIDPK)
		g.CertsRead = append(g.CertsRead, a.DeviceIDCert)
		g.CertsManage = append(g.CertsManage, a.DeviceIDCert)
	}
	if a := p.Attestation; a != nil {
		g.KeysUse = append(g.KeysUse, a.SymmetricKey, a.GroupKey, a.IdentityPK)
		g.CertsRead = append(g.CertsRead, a.IdentityCert)
		g.CertsManage = append(g.CertsManage, a.IdentityCert)
		if o := a.OperationalCert; o != nil {
			// DPS-issued operational certificate: its two key slots, the
			// certificate and the trust bundle, by their configured ids.
			ids := o.OperationalKeyIDs()
			g.KeysUse = append(g.KeysUse, ids[:]...)
			g.KeysManage = append(g.KeysManage, ids[:]...)
			g.CertsRead = append(g.CertsRead, o.CertID, o.TrustBundleID)
			g.CertsManage = append(g.CertsManage, o.CertID, o.TrustBundleID)
		}
	}
	g.CertsRead = append(g.CertsRead, c.Cloud.TrustedCerts...)
	g.normalize()
	return g
}

// normalize sorts the lists and drops empty and repeated ids.
func (g *ServiceGrant) normalize() {
	for _, l := range []*[]string{&g.KeysUse, &g.KeysManage, &g.KeysExport, &g.CertsRead, &g.CertsManage} {
		seen := map[string]bool{}
		var out []string
		for _, id := range *l {
			if id != "" && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
		sort.Strings(out)
		*l = out
	}
}

// serviceGrantIDs is one action's grant in the rules file.
type serviceGrantIDs struct {
	Detail string   `json:"detail"`
	IDs    []string `json:"ids"`
}

// table is the grant as action -> ids, with keys.read on every key id.
func (g ServiceGrant) table() map[string]serviceGrantIDs {
	t := map[string]serviceGrantIDs{}
	add := func(action, detail string, ids []string) {
		if len(ids) > 0 {
			t[action] = serviceGrantIDs{Detail: detail, IDs: ids}
		}
	}
	read := ServiceGrant{KeysUse: append(append(append([]string{}, g.KeysUse...), g.KeysManage...), g.KeysExport...)}
	read.normalize()
	add("org.edgev2.keys.read", "key_id", read.KeysUse)
	add("org.edgev2.keys.use", "key_id", g.KeysUse)
	add("org.edgev2.keys.manage", "key_id", g.KeysManage)
	add("org.edgev2.keys.export", "key_id", g.KeysExport)
	add("org.edgev2.certs.read", "cert_id", g.CertsRead)
	add("org.edgev2.certs.manage", "cert_id", g.CertsManage)
	return t
}

// ServiceRules compiles the services' grants into one polkit rules file.
// from names the configuration in the header. Ids are compared exactly
// (no patterns) and JSON-encoded, so no id can inject code; a call that
// names no id (a listing) is not granted.
func ServiceRules(from string, grants ...ServiceGrant) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Written by `edgectl config apply` from %s; edit that file, not this one.\n", jsComment(from))
	b.WriteString("// Each service may use and manage exactly the key and certificate ids its configuration\n")
	b.WriteString("// names (docs/certs.md, \"Service grants\"). edgev2-modrtd runs as root and needs no grant.\n")
	for _, g := range grants {
		grantsJSON, err := json.MarshalIndent(g.table(), "  ", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode grants of %s: %w", g.Service, err)
		}
		fmt.Fprintf(&b, "\n// %s (user %s): %s\n", jsComment(g.Service), jsComment(g.User), jsComment(g.Why))
		session := ""
		if len(g.KeysUse) > 0 {
			// A direct session to keyd (its hot path): every key operation
			// on it is still checked against the keys.use grant below.
			session = "\n  if (action.id === \"org.edgev2.keys.session\") { return polkit.Result.YES; }"
		}
		fmt.Fprintf(&b, `polkit.addRule(function(action, subject) {
  if (subject.user !== %s) { return polkit.Result.NOT_HANDLED; }%s
  var grants = %s;
  if (!Object.prototype.hasOwnProperty.call(grants, action.id)) { return polkit.Result.NOT_HANDLED; }
  var g = grants[action.id];
  var id = action.lookup(g.detail);
  if (id === undefined || id === null || id === "") { return polkit.Result.NOT_HANDLED; }
  for (var i = 0; i < g.ids.length; i++) {
    if (g.ids[i] === id) { return polkit.Result.YES; }
  }
  return polkit.Result.NOT_HANDLED;
});
`, jsString(g.User), session, grantsJSON)
	}
	return b.Bytes(), nil
}

// ServiceConfigs are the texts of the services' config files; nil means
// that service does not run.
type ServiceConfigs struct {
	Certd, Identityd, Modrtd []byte
}

// ServiceRulesFor compiles the grants of the services that run with these
// config texts, read with the daemons' own parsers: what `config apply`
// writes for the same files. Tests that start the daemons by hand install
// it.
func ServiceRulesFor(files ServiceConfigs) ([]byte, error) {
	var gs []ServiceGrant
	var rt *rtconfig.Config
	if files.Modrtd != nil {
		var err error
		if rt, err = rtconfig.ParseConfig("modrtd.toml", files.Modrtd); err != nil {
			return nil, err
		}
	}
	if files.Certd != nil {
		c, err := certsconfig.Parse("certd.toml", files.Certd)
		if err != nil {
			return nil, err
		}
		gs = append(gs, CertdGrant(c, rt))
	}
	if files.Identityd != nil {
		c, err := idconfig.ParseConfig("identityd.toml", files.Identityd)
		if err != nil {
			return nil, err
		}
		gs = append(gs, IdentitydGrant(c))
	}
	return ServiceRules("the services' configuration files", gs...)
}
