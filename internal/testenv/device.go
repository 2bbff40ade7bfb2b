package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	idapi "github.com/edgev2/edgev2/identity/api"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/superconfig"
	keysapi "github.com/edgev2/edgev2/keys/api"
	kclient "github.com/edgev2/edgev2/keys/client"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	rtclient "github.com/edgev2/edgev2/modrt/client"
)

// The daemons a Device runs, by the name DeviceOptions and Device's
// accessors use.
const (
	Keyd      = "keyd"
	Certd     = "certd"
	Identityd = "identityd"
	Modrtd    = "modrtd"
)

// Daemon is how a Device runs one of its services.
type Daemon struct {
	// Config is the TOML after the "homedir = ..." line the Device writes.
	// "$CLOUD_HOST", "$CLOUD_URL" and "$CLOUD_CA" (a file every uid can
	// read) name the device's cloud; for modrtd, containerd_address and
	// namespace are written too.
	Config string
	Env    []string // added to the daemon's environment
	Args   []string // after --config FILE; nil: --log-level debug
	// Home names the daemon's state directory and config file in the
	// device's directory (default: the daemon's name), so a test can start
	// it afresh under another name.
	Home string
	// Namespace is modrtd's containerd namespace (default "edgev2-test");
	// runc keeps its state per namespace, so a test that reuses a module
	// name another test left in runc needs its own.
	Namespace string
}

// DeviceOptions says which parts a Device has. A nil daemon is not
// started (StartDaemon can start it later).
type DeviceOptions struct {
	Keyd, Certd, Identityd, Modrtd *Daemon
	// Rules are polkit rules (name → JavaScript) installed before the
	// daemons start. The services' own grants are compiled from their
	// configs and installed as `edgectl config apply` does, always.
	Rules map[string]string
	// Labcloud, if set, is edgev2-labcloud's config: the binary runs as
	// the device's cloud ($STATE as in StartLabcloud).
	Labcloud string
	// Cloud is a cloud the test runs itself (in-process, to look inside
	// it), used when Labcloud is empty.
	Cloud *Cloud
	// Containerd starts containerd (implied by Modrtd).
	Containerd bool
}

// Cloud is where the device's services reach the cloud.
type Cloud struct {
	Host  string // host name, with ":port" unless 443 ($CLOUD_URL is https://Host)
	CAPEM []byte // the trust anchor of its TLS certificate
}

// Device is THE test fixture for anything that needs more than one part:
// a private system bus, the real polkitd, the chosen services built from
// ./cmd and running under their own users with the configs given (and the
// grants compiled from them), the cloud (labcloud) and containerd. Tests
// reach it through its accessors; everything is torn down by t.Cleanup.
type Device struct {
	t      TB // the test the device lives as long as
	Dir    string
	Bus    *Bus
	Polkit *Polkit
	Ctr    *Containerd // nil without containerd
	Lab    *Labcloud   // nil without the labcloud binary
	Cloud  *Cloud      // the cloud the configs name; nil without one
	CAFile string      // Cloud's CA, readable by every uid

	namespace string
	daemons   map[string]*Service
	configs   map[string]string // daemon → its current config file
	conn      *godbus.Conn
}

// grantSeq names each compiled grant installed in this test process.
var grantSeq atomic.Int64

// daemonSpec is what is fixed about each daemon.
var daemonSpec = map[string]struct{ pkg, user, busName string }{
	Keyd:      {"./cmd/edgev2-keyd", ServiceUser, keysapi.BusName},
	Certd:     {"./cmd/edgev2-certd", CertsUser, certsapi.BusName},
	Identityd: {"./cmd/edgev2-identityd", IdentityUser, idapi.BusName},
	Modrtd:    {"./cmd/edgev2-modrtd", "root", rtapi.BusName},
}

// StartDevice starts the parts opt names, the cloud and containerd first,
// then keyd, certd, identityd and modrtd in that order.
func StartDevice(t TB, opt DeviceOptions) *Device {
	t.Helper()
	RequireRoot(t)
	EnsureAllUsers(t)
	d := &Device{t: t, Dir: SharedTempDir(t, "device"), daemons: map[string]*Service{}, configs: map[string]string{}}
	d.Bus = StartBus(t)
	d.Polkit = StartPolkit(t, d.Bus)
	for name, js := range opt.Rules {
		d.Polkit.AddRule(t, name, js)
	}
	switch {
	case opt.Labcloud != "":
		d.Lab = StartLabcloud(t, opt.Labcloud)
		ca, err := os.ReadFile(d.Lab.CAFile)
		if err != nil {
			t.Fatalf("read labcloud's CA: %v", err)
		}
		d.Cloud = &Cloud{Host: d.Lab.Hostname, CAPEM: ca}
	case opt.Cloud != nil:
		d.Cloud = opt.Cloud
	}
	if d.Cloud != nil {
		d.CAFile = filepath.Join(d.Dir, "cloud-ca.pem")
		if err := os.WriteFile(d.CAFile, d.Cloud.CAPEM, 0o644); err != nil {
			t.Fatalf("%v", err)
		}
	}
	if opt.Containerd || opt.Modrtd != nil {
		d.Ctr = StartContainerd(t)
	}
	// Every config is written before the first daemon starts, so the
	// grants compiled for certd already know identityd's and modrtd's.
	order := []string{Keyd, Certd, Identityd, Modrtd}
	given := map[string]*Daemon{Keyd: opt.Keyd, Certd: opt.Certd, Identityd: opt.Identityd, Modrtd: opt.Modrtd}
	for _, name := range order {
		if given[name] != nil {
			d.writeConfig(t, name, *given[name])
		}
	}
	d.grant(t)
	for _, name := range order {
		if given[name] != nil {
			d.run(t, name, *given[name])
		}
	}
	return d
}

// StartDaemon (re)starts one daemon with this config, stopping the one
// running, and installs the grants compiled from the configs now in use.
func (d *Device) StartDaemon(t TB, name string, dm Daemon) *Service {
	t.Helper()
	if s := d.daemons[name]; s != nil && s.IsRunning() {
		s.Stop(t)
	}
	d.writeConfig(t, name, dm)
	d.grant(t)
	return d.run(t, name, dm)
}

// writeConfig writes the daemon's home and config file, owned by its user.
func (d *Device) writeConfig(t TB, name string, dm Daemon) {
	t.Helper()
	spec, ok := daemonSpec[name]
	if !ok {
		t.Fatalf("testenv: no daemon %q", name)
	}
	uid, gid := EnsureUser(t, spec.user)
	base := dm.Home
	if base == "" {
		base = name
	}
	home := filepath.Join(d.Dir, base)
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatalf("%v", err)
	}
	os.Chown(home, uid, gid)
	text := fmt.Sprintf("homedir = %q\n", home)
	if name == Modrtd {
		d.Containerd()
		d.namespace = dm.Namespace
		if d.namespace == "" {
			d.namespace = "edgev2-test"
		}
		text += fmt.Sprintf("containerd_address = %q\nnamespace = %q\n", d.Ctr.Address, d.namespace)
	}
	text += d.expand(dm.Config)
	path := filepath.Join(d.Dir, base+".toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatalf("%v", err)
	}
	os.Chown(path, uid, gid)
	d.configs[name] = path
}

// expand replaces the cloud's placeholders in a config text.
func (d *Device) expand(text string) string {
	if d.Cloud == nil {
		return text
	}
	return strings.NewReplacer("$CLOUD_HOST", d.Cloud.Host, "$CLOUD_URL", "https://"+d.Cloud.Host,
		"$CLOUD_CA", d.CAFile).Replace(text)
}

func (d *Device) run(t TB, name string, dm Daemon) *Service {
	t.Helper()
	spec := daemonSpec[name]
	args := dm.Args
	if args == nil {
		args = []string{"--log-level", "debug"}
	}
	// Cleanup belongs to the device's test: a daemon (re)started in a
	// subtest lives on after it, as the device does.
	s := StartService(d.t, d.Bus, ServiceOptions{
		Binary: BuildBinary(t, spec.pkg), Args: append([]string{"--config", d.configs[name]}, args...),
		User: spec.user, Env: dm.Env, BusName: spec.busName,
	})
	d.daemons[name] = s
	return s
}

// grant installs the services' grants compiled from the configs in use,
// as `edgectl config apply` writes them.
func (d *Device) grant(t TB) {
	t.Helper()
	read := func(name string) []byte {
		if d.configs[name] == "" {
			return nil
		}
		data, err := os.ReadFile(d.configs[name])
		if err != nil {
			t.Fatalf("%v", err)
		}
		return data
	}
	files := superconfig.ServiceConfigs{Certd: read(Certd), Identityd: read(Identityd), Modrtd: read(Modrtd)}
	if files.Certd == nil && files.Identityd == nil && files.Modrtd == nil {
		return
	}
	rules, err := superconfig.ServiceRulesFor(files)
	if err != nil {
		t.Fatalf("compile the services' grants: %v", err)
	}
	// Installed for the device's life, like the daemons: a grant made for
	// a daemon started in a subtest stays as long as the daemon runs.
	d.Polkit.AddRule(d.t, fmt.Sprintf("service-grant-%d", grantSeq.Add(1)), string(rules))
}

// Containerd is the device's containerd, started now if it was not.
func (d *Device) Containerd() *Containerd {
	if d.Ctr == nil {
		d.Ctr = StartContainerd(d.t)
	}
	return d.Ctr
}

// Daemon is the daemon's process (running, or the last run), nil if it
// was never started.
func (d *Device) Daemon(name string) *Service { return d.daemons[name] }

// ConfigPath is the daemon's current config file.
func (d *Device) ConfigPath(name string) string { return d.configs[name] }

// Home is the daemon's state directory under its default name.
func (d *Device) Home(name string) string { return filepath.Join(d.Dir, name) }

// Conn is root's connection to the device's bus.
func (d *Device) Conn() *godbus.Conn {
	if d.conn == nil {
		d.conn = d.Bus.Conn(d.t)
	}
	return d.conn
}

// ConnAs is a new connection to the device's bus as user.
func (d *Device) ConnAs(t TB, user string) *godbus.Conn { return d.Bus.ConnAs(t, user) }

// Env is the environment a program (edgectl) needs to reach the device.
func (d *Device) Env() []string { return []string{"DBUS_SYSTEM_BUS_ADDRESS=" + d.Bus.Address} }

// The clients, as root.
func (d *Device) Keys() *kclient.Client     { return kclient.New(d.Conn()) }
func (d *Device) Certs() *cclient.Client    { return cclient.New(d.Conn()) }
func (d *Device) Identity() *iclient.Client { return iclient.New(d.Conn()) }
func (d *Device) Modules() *rtclient.Client { return rtclient.New(d.Conn()) }

// Namespace is modrtd's containerd namespace.
func (d *Device) Namespace() string { return d.namespace }

// Output is what the daemon printed so far (its log), across restarts.
func (d *Device) Output(name string) string { return d.daemons[name].Output() }
