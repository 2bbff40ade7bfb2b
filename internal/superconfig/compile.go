package superconfig

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/pelletier/go-toml/v2"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	idconfig "github.com/edgev2/edgev2/identity/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// Output is what `edgectl config apply` installs.
type Output struct {
	Files []File // in a stable order
	// Obsolete are files an earlier apply may have written that this
	// configuration no longer uses (inline keys since removed): remove them
	// if present, so a secret does not outlive its setting.
	Obsolete []string
	// Credentials are the secrets to store as systemd credentials, sorted
	// by name; Seal is how ([secrets] seal: auto, tpm2+host, host, none).
	// Any other edgev2.* credential in the stores is obsolete.
	Credentials []Credential
	Seal        string
}

// File is one file to install.
type File struct {
	Path    string      // absolute install path
	Owner   string      // user that must own it
	Mode    os.FileMode // 0600 for service configs and keys; 0644 for the polkit rules
	Data    []byte
	Service string // systemd unit to restart when this file changes; "" for none
	// DaemonReload: systemd must reload its units when this file changes
	// (a unit drop-in).
	DaemonReload bool
}

// The services' users and units.
const (
	keysUser      = "edgekeys"
	certsUser     = "edgecerts"
	identityUser  = "edgeid"
	runtimeUser   = "root"
	keydUnit      = "edgev2-keyd.service"
	certdUnit     = "edgev2-certd.service"
	identitydUnit = "edgev2-identityd.service"
	modrtdUnit    = "edgev2-modrtd.service"
)

// LookupUID resolves a user name to its uid for identity principals that
// give no uid; tests may replace it.
var LookupUID = func(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

// Compile turns a validated super-config into the files to install.
func Compile(c *Config) (*Output, error) {
	p, err := c.plan()
	if err != nil {
		return nil, err
	}
	for pi, ci := range p.lookupUID {
		pr := c.Principals[ci]
		uid, err := LookupUID(pr.User)
		if err != nil {
			return nil, c.bad(fmt.Sprintf("principal[%d].user", ci), fmt.Sprintf("cannot find user %q: %v", pr.User, err), "create the user first, or set uid = <number>")
		}
		p.identityd.Principals[pi].UID = uid
	}
	files, err := c.files(p)
	if err != nil {
		return nil, err
	}
	// Inline keys were once clear files; they are credentials now.
	obsolete := []string{secretKeyPath(idDevice), secretKeyPath(idGroupKey)}
	dropIns, gone := p.dropIns(p.seal)
	files = append(files, dropIns...)
	obsolete = append(obsolete, gone...)
	out := &Output{Files: files, Obsolete: obsolete, Seal: p.seal}
	for _, name := range sortedKeys(p.credentials) {
		out.Credentials = append(out.Credentials, *p.credentials[name])
	}
	return out, nil
}

func (c *Config) files(p *plan) ([]File, error) {
	var out []File
	compiled := map[string][]byte{}
	add := func(path, owner, unit string, v any) error {
		data, err := c.marshal(v)
		if err != nil {
			return fmt.Errorf("compile %s: %w", path, err)
		}
		compiled[path] = data
		out = append(out, File{Path: path, Owner: owner, Mode: 0o600, Data: data, Service: unit})
		return nil
	}
	if err := add("/etc/edgev2/keyd.toml", keysUser, keydUnit, p.keyd); err != nil {
		return nil, err
	}
	if err := add("/etc/edgev2/certd.toml", certsUser, certdUnit, p.certd); err != nil {
		return nil, err
	}
	if err := add("/etc/edgev2/identityd.toml", identityUser, identitydUnit, p.identityd); err != nil {
		return nil, err
	}
	if err := add("/etc/edgev2/modrtd.toml", runtimeUser, modrtdUnit, p.modrtd); err != nil {
		return nil, err
	}
	// The services' grants come from the compiled files as their daemons
	// read them (defaults filled in), so they name the ids each uses.
	cc, err := certsconfig.Parse("certd.toml", compiled["/etc/edgev2/certd.toml"])
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", ServicesRulesPath, err)
	}
	ic, err := idconfig.ParseConfig("identityd.toml", compiled["/etc/edgev2/identityd.toml"])
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", ServicesRulesPath, err)
	}
	rt, err := rtconfig.ParseConfig("modrtd.toml", compiled["/etc/edgev2/modrtd.toml"])
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", ServicesRulesPath, err)
	}
	services, err := ServiceRules(c.path, CertdGrant(cc, rt), IdentitydGrant(ic))
	if err != nil {
		return nil, err
	}
	rules, err := c.rules()
	if err != nil {
		return nil, err
	}
	// polkitd watches its rules directory itself: nothing to restart.
	out = append(out, File{Path: ServicesRulesPath, Owner: "root", Mode: 0o644, Data: services})
	out = append(out, File{Path: RulesPath, Owner: "root", Mode: 0o644, Data: rules})
	return out, nil
}

func (c *Config) marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by `edgectl config apply` from %s; edit that file, not this one.\n", jsComment(c.path))
	enc := toml.NewEncoder(&b).SetIndentTables(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
