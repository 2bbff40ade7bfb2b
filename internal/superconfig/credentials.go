package superconfig

import (
	"fmt"
	"sort"
	"strings"

	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// Credential is one secret of the super-config that `edgectl config apply`
// stores as a systemd credential (sealed with systemd-creds unless
// [secrets] seal = "none") and the unit loads into its
// $CREDENTIALS_DIRECTORY; the compiled service configs name it instead of
// holding the value.
type Credential struct {
	// Name is edgev2.<service>.<what>: the file name under the credential
	// store, the name sealed into the file, and the file the service reads
	// in $CREDENTIALS_DIRECTORY.
	Name string
	Unit string // the unit that loads it
	From string // the super-config setting it comes from
	Data []byte
}

// The seal settings of [secrets] seal.
const (
	SealAuto     = "auto" // tpm2+host with a TPM, host without
	SealTPM2Host = credential.SealTPM2Host
	SealHost     = credential.SealHost
	SealNone     = "none" // clear files in /etc/credstore (LoadCredential=)
)

// Secrets is [secrets]: how apply stores the super-config's secrets.
type Secrets struct {
	Seal string `toml:"seal"`
}

// CredentialsDropIn is the drop-in apply writes for a unit's credentials.
func CredentialsDropIn(unit string) string {
	return "/etc/systemd/system/" + unit + ".d/50-credentials.conf"
}

// CredentialPath is where credential name is stored for a seal setting.
func CredentialPath(name, seal string) string {
	if seal == SealNone {
		return credential.ClearStoreDir + "/" + name
	}
	return credential.StoreDir + "/" + name
}

// credentialName is the credential for what of service svc.
func credentialName(svc, what string) string { return "edgev2." + svc + "." + what }

// addCredential records a secret; one name holds one value.
func (p *plan) addCredential(svc, unit, what, from string, data []byte) (string, error) {
	name := credentialName(svc, what)
	if err := credential.ValidName(name); err != nil {
		return "", fmt.Errorf("credential for %s: %w", from, err)
	}
	if p.credentials == nil {
		p.credentials = map[string]*Credential{}
	}
	if old, ok := p.credentials[name]; ok && string(old.Data) != string(data) {
		return "", fmt.Errorf("credential %s: %s and %s both need it, with different values", name, old.From, from)
	}
	if _, ok := p.credentials[name]; !ok {
		p.credentials[name] = &Credential{Name: name, Unit: unit, From: from, Data: data}
	}
	return name, nil
}

func (c *Config) seal() (string, error) {
	s := SealAuto
	if c.Secrets != nil && c.Secrets.Seal != "" {
		s = c.Secrets.Seal
	}
	switch s {
	case SealAuto, SealTPM2Host, SealHost, SealNone:
		return s, nil
	}
	return "", c.bad("secrets.seal", fmt.Sprintf("unknown value %q", s), `use "auto" (tpm2+host with a TPM, host without), "tpm2+host", "host" or "none" (clear files; not for production)`)
}

// planPINs moves every pin-value of the PKCS#11 URIs keyd gets (base slot
// and preloaded keys) into keyd credentials: edgev2.keyd.pin for the base
// slot's PIN, edgev2.keyd.pin-2, -3... for other PINs, one per value.
func (c *Config) planPINs(p *plan) error {
	byPIN := map[string]string{}
	n := 1
	move := func(key, uri string) (string, error) {
		u, err := pkcs11uri.Parse(uri)
		if err != nil || u.InlinePIN() == "" {
			return uri, nil // checked before; nothing to move
		}
		pin := u.InlinePIN()
		name, ok := byPIN[pin]
		if !ok {
			what := "pin"
			if n > 1 {
				what = fmt.Sprintf("pin-%d", n)
			}
			n++
			if name, err = p.addCredential("keyd", keydUnit, what, key, []byte(pin)); err != nil {
				return "", c.bad(key, err.Error(), "")
			}
			byPIN[pin] = name
		}
		return u.WithPINSource(credential.Scheme + name).String(), nil
	}
	var err error
	if p.keyd.PKCS11BaseSlot != "" {
		if p.keyd.PKCS11BaseSlot, err = move("keys.pkcs11_base_slot", p.keyd.PKCS11BaseSlot); err != nil {
			return err
		}
	}
	for _, id := range sortedKeys(p.keyd.PreloadedKeys) {
		uri := p.keyd.PreloadedKeys[id]
		if !isPKCS11URI(uri) {
			continue
		}
		from := p.keyFrom[id]
		if from == "" {
			from = "preloaded_keys." + id
		}
		if p.keyd.PreloadedKeys[id], err = move(from, uri); err != nil {
			return err
		}
	}
	return nil
}

// dropIns are the units' credential drop-ins, and the drop-ins of units
// without credentials as obsolete.
func (p *plan) dropIns(seal string) (files []File, obsolete []string) {
	byUnit := map[string][]string{}
	for name, cr := range p.credentials {
		byUnit[cr.Unit] = append(byUnit[cr.Unit], name)
	}
	for _, unit := range []string{keydUnit, certdUnit, identitydUnit, modrtdUnit} {
		names := byUnit[unit]
		if len(names) == 0 {
			obsolete = append(obsolete, CredentialsDropIn(unit))
			continue
		}
		sort.Strings(names)
		var b strings.Builder
		b.WriteString("# Written by `edgectl config apply`: the secrets of the super-config this\n")
		b.WriteString("# service reads from $CREDENTIALS_DIRECTORY. Do not edit; re-run apply.\n[Service]\n")
		for _, name := range names {
			if seal == SealNone {
				fmt.Fprintf(&b, "LoadCredential=%s:%s\n", credential.UnitEscape(name), credential.UnitEscape(CredentialPath(name, seal)))
			} else {
				fmt.Fprintf(&b, "%s\n", credential.UnitLine(name))
			}
		}
		files = append(files, File{Path: CredentialsDropIn(unit), Owner: "root", Mode: 0o644, Data: []byte(b.String()), Service: unit, DaemonReload: true})
	}
	return files, obsolete
}

// planCredentials moves every secret the compiled configs would hold into
// credentials the configs name: inline keys, PINs, the EST password, the
// connection string.
func (c *Config) planCredentials(r *ids, p *plan) error {
	var err error
	if p.seal, err = c.seal(); err != nil {
		return err
	}
	for _, id := range sortedKeys(r.secretFiles) {
		if _, err := p.addCredential("keyd", keydUnit, id, r.secretFrom[id], r.secretFiles[id]); err != nil {
			return c.bad(r.secretFrom[id], err.Error(), "")
		}
	}
	if err := c.planPINs(p); err != nil {
		return err
	}
	if est := c.CertIssuance.EST; est != nil && est.Password != "" && p.certd.EST.Username != "" { // [est] written (a password needs a username)
		if p.certd.EST.PasswordCredential, err = p.addCredential("certd", certdUnit, "est-password", "cert_issuance.est.password", []byte(est.Password)); err != nil {
			return c.bad("cert_issuance.est.password", err.Error(), "")
		}
	}
	if cs := c.Provisioning.ConnectionString; cs != "" && p.identityd.Provisioning.Source == "manual" {
		if p.identityd.Provisioning.ConnectionStringCredential, err = p.addCredential("identityd", identitydUnit, "connection-string", "provisioning.connection_string", []byte(cs)); err != nil {
			return c.bad("provisioning.connection_string", err.Error(), "")
		}
	}
	return nil
}

// sealRegistryPassword moves a module spec's registry password
// (config.settings.auth.password) into the credential
// edgev2.modrtd.<module>.registry-password; the spec modrtd gets has none.
func (c *Config) sealRegistryPassword(p *plan, key string, m Module) (rtconfig.LocalModule, error) {
	out := rtconfig.LocalModule{Name: m.Name, Spec: m.Spec}
	s, err := modspec.ParseSpec([]byte(m.Spec))
	if err != nil || s.Config.Settings.Auth == nil || s.Config.Settings.Auth.Password == "" {
		return out, nil // checked before; no password
	}
	spec, err := modspec.SetRegistryPassword([]byte(m.Spec), "")
	if err != nil {
		return out, c.bad(key, err.Error(), "write a ModuleSpec JSON (docs/modules.md)")
	}
	name, err := p.addCredential("modrtd", modrtdUnit, m.Name+".registry-password", key, []byte(s.Config.Settings.Auth.Password))
	if err != nil {
		return out, c.bad(key, err.Error(), "")
	}
	out.Spec, out.RegistryPasswordCredential = string(spec), name
	return out, nil
}
