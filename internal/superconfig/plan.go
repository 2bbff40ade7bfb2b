package superconfig

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	idconfig "github.com/edgev2/edgev2/identity/config"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/internal/config"
	keysconfig "github.com/edgev2/edgev2/keys/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
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

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
