package main

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
	"github.com/edgev2/edgev2/modrt/modspec"
)

// credentialRoot prefixes the credential stores (tests); "" on a device.
var credentialRoot = ""

// checkSecrets reports, per secret the services use, where it lives:
// sealed to tpm2+host or host (a systemd credential), or in clear (a
// warning: whoever images the disk has it).
func (k *checker) checkSecrets() {
	n := 0
	clear := func(name, msg, fix string) {
		n++
		k.add("secrets."+name, statusWarning, msg, fix)
	}
	cred := func(name, setting, cr string) {
		n++
		k.credentialResult("secrets."+name, setting, cr)
	}
	const sealFix = "put the secret in the super-config and run `edgectl config apply`: it seals it as a systemd credential (docs/config.md)"
	pin := func(name, setting, uri string) {
		u, err := pkcs11uri.Parse(uri)
		if err != nil || !u.HasPIN() {
			return
		}
		switch cr, isCred, _ := credential.Ref(u.PINSource); {
		case u.InlinePIN() != "":
			clear(name, setting+": the PIN is in clear in the file (pin-value)", sealFix)
		case isCred:
			cred(name, setting, cr)
		default:
			clear(name, fmt.Sprintf("%s: the PIN is in a clear file (pin-source %s)", setting, u.PINSource), sealFix)
		}
	}
	if c := k.cfg.keyd; c != nil {
		pin("keyd.pin", "keyd.toml pkcs11_base_slot", c.PKCS11BaseSlot)
		for _, id := range slices.Sorted(maps.Keys(c.PreloadedKeys)) {
			uri := c.PreloadedKeys[id]
			if cr, ok, _ := credential.Ref(uri); ok {
				cred("keyd.key."+id, "keyd.toml preloaded_keys."+id, cr)
				continue
			}
			pin("keyd.pin."+id, "keyd.toml preloaded_keys."+id, uri)
		}
	}
	if c := k.cfg.certd; c != nil {
		switch {
		case c.EST.PasswordCredential != "":
			cred("certd.est-password", "certd.toml [est] password_credential", c.EST.PasswordCredential)
		case c.EST.Password != "":
			clear("certd.est-password", "certd.toml [est] password: the EST password is in clear in the file", sealFix)
		}
		switch {
		case c.EST.ChallengePasswordCredential != "":
			cred("certd.est-challenge-password", "certd.toml [est] challenge_password_credential", c.EST.ChallengePasswordCredential)
		case c.EST.ChallengePasswordFile != "":
			clear("certd.est-challenge-password", "certd.toml [est] challenge_password_file: the challenge password is in a clear file ("+c.EST.ChallengePasswordFile+")",
				"seal it: `systemd-creds encrypt --name=edgev2.certd.est-challenge-password - /etc/credstore.encrypted/edgev2.certd.est-challenge-password`, set challenge_password_credential and add the LoadCredentialEncrypted= line to certd's unit")
		}
	}
	if c := k.cfg.identityd; c != nil {
		switch p := c.Provisioning; {
		case p.ConnectionStringCredential != "":
			cred("identityd.connection-string", "identityd.toml [provisioning] connection_string_credential", p.ConnectionStringCredential)
		case p.ConnectionString != "":
			clear("identityd.connection-string", "identityd.toml [provisioning] connection_string: the device key is in clear in the file", sealFix)
		}
	}
	if c := k.cfg.modrtd; c != nil {
		for _, m := range c.Modules {
			name := "modrtd." + m.Name + ".registry-password"
			if m.RegistryPasswordCredential != "" {
				cred(name, "modrtd.toml module "+m.Name+" registry_password_credential", m.RegistryPasswordCredential)
			} else if s, err := modspec.ParseSpec([]byte(m.Spec)); err == nil && s.Config.Settings.Auth != nil && s.Config.Settings.Auth.Password != "" {
				clear(name, "modrtd.toml module "+m.Name+": the registry password is in clear in the spec", sealFix)
			}
		}
	}
	// The super-config is where an operator writes the secrets: apply
	// seals them, but the file itself still holds them.
	if sc, err := superconfig.Load(k.o.superConfig); err == nil {
		if out, err := superconfig.Compile(sc); err == nil && len(out.Credentials) > 0 {
			var from []string
			for _, cr := range out.Credentials {
				from = append(from, cr.From)
			}
			clear("super-config", fmt.Sprintf("%s holds %d secrets in clear (%v); the services use sealed copies",
				k.o.superConfig, len(out.Credentials), from),
				"after `edgectl config apply`, keep the super-config off the device (apply it from a tmpfs such as /run, with -c) or on an encrypted disk")
		}
	}
	if n == 0 {
		k.ok("secrets", "the configuration holds no secrets")
	}
}

// credentialResult reports where credential cr lives.
func (k *checker) credentialResult(check, setting, cr string) {
	sealed := filepath.Join(credentialRoot, credential.StoreDir, cr)
	clearPath := filepath.Join(credentialRoot, credential.ClearStoreDir, cr)
	data, err := os.ReadFile(sealed)
	switch {
	case err == nil:
		switch s := credential.Sealing(data); s {
		case credential.SealTPM2Host:
			k.ok(check, "%s: sealed to tpm2+host (%s)", setting, sealed)
		case credential.SealTPM2:
			k.ok(check, "%s: sealed to the TPM (%s)", setting, sealed)
		case credential.SealHost:
			k.ok(check, "%s: sealed to host (%s): the host key in /var/lib/systemd/credential.secret; no TPM binding", setting, sealed)
		default:
			k.add(check, statusWarning, fmt.Sprintf("%s: %s is not sealed (%q)", setting, sealed, s), "run `edgectl config apply` to seal it again")
		}
	case errors.Is(err, fs.ErrPermission):
		k.add(check, statusWarning, fmt.Sprintf("%s: %s is not readable by this user", setting, sealed), "run edgectl check as root")
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(clearPath); err == nil {
			k.add(check, statusWarning, fmt.Sprintf("%s: in a clear file (%s, [secrets] seal = \"none\")", setting, clearPath),
				`set [secrets] seal = "auto" in the super-config and run `+"`edgectl config apply`")
			return
		}
		k.add(check, statusError, fmt.Sprintf("%s: credential %s is in neither %s nor %s", setting, cr, sealed, clearPath),
			"run `edgectl config apply` to write it from the super-config")
	default:
		k.add(check, statusError, fmt.Sprintf("%s: %v", setting, err), "")
	}
}
