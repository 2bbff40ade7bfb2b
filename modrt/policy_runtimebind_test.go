package modrt

import (
	"errors"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	rtpolicy "github.com/edgev2/edgev2/modrt/policy"
)

// A spec stored before the policy (an older, laxer modrtd, or a spec
// written by hand into containerd) may bind the runtime's own directories.
// The start check lets through only what the runtime binds into that very
// module; everything else under the runtime's directory is checked like
// any bind, and refused.
func TestStartCheckExemptsOnlyTheModulesOwnRuntimeBinds(t *testing.T) {
	home := t.TempDir()
	p := rtpolicy.Policy{VolumesDir: filepath.Join(home, "volumes"), RuntimeDir: home, Never: []string{home}}
	ro := []string{"rbind", "ro"}
	bind := func(src, dst string, opts []string) specs.Mount {
		return specs.Mount{Type: "bind", Source: src, Destination: dst, Options: opts}
	}
	for _, tc := range []struct {
		name, module string
		m            specs.Mount
		ok           bool
	}{
		{"own workload socket directory", "sensor", bind(filepath.Join(home, "workload", "sensor"), "/var/run/iotedge", ro), true},
		{"hosts file", "sensor", bind(filepath.Join(home, "hosts", "network-hosts"), "/etc/hosts", ro), true},
		{"resolv.conf", "sensor", bind(filepath.Join(home, "hosts", "network-resolv.conf"), "/etc/resolv.conf", ro), true},
		{"management socket for the agent", "edgeAgent", bind(filepath.Join(home, "mgmt"), "/var/run/iotedge-mgmt", ro), true},
		{"host's hosts file", "sensor", bind("/etc/hosts", "/etc/hosts", ro), true},

		{"another module's workload socket directory", "sensor", bind(filepath.Join(home, "workload", "edgeHub"), "/var/run/iotedge", ro), false},
		{"every workload socket", "sensor", bind(filepath.Join(home, "workload"), "/w", ro), false},
		{"management socket for another module", "sensor", bind(filepath.Join(home, "mgmt"), "/var/run/iotedge-mgmt", ro), false},
		{"the runtime's whole directory", "sensor", bind(home, "/home", ro), false},
		{"the runtime's state", "sensor", bind(filepath.Join(home, "runtime"), "/state", ro), false},
		{"own workload directory read-write", "sensor", bind(filepath.Join(home, "workload", "sensor"), "/var/run/iotedge", []string{"rbind", "rw"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.CheckStart(tc.module, "example.com/m:1", &specs.Spec{Mounts: []specs.Mount{tc.m}})
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, rtpolicy.ErrPolicy) {
				t.Fatalf("start check: %v; want a refusal by the module policy", err)
			}
		})
	}
}

// A container made before read-only binds were recursive ("rbind", "ro"
// without "rro"), or with a read-only bind that takes the host's mounts
// (slave or shared propagation), can write to what is mounted below the
// source: its next start is refused like a read-write bind of a read-only
// root.
func TestStartCheckTakesAReadOnlyRbindWithoutRroForReadWrite(t *testing.T) {
	root := t.TempDir()
	p := rtpolicy.Policy{ReadOnlyBinds: []string{root}}
	for _, tc := range []struct {
		opts []string
		ok   bool
	}{
		{[]string{"rbind", "ro", "rprivate", "rro"}, true},
		{[]string{"bind", "ro", "rprivate"}, true},
		{[]string{"rbind", "ro", "rprivate"}, false},
		{[]string{"rbind", "ro", "rslave", "rro"}, false},
		{[]string{"bind", "ro", "shared"}, false},
		{[]string{"rbind", "rw", "rprivate"}, false},
	} {
		m := specs.Mount{Type: "bind", Source: root, Destination: "/ro", Options: tc.opts}
		err := p.CheckStart("sensor", "example.com/m:1", &specs.Spec{Mounts: []specs.Mount{m}})
		if tc.ok && err != nil {
			t.Errorf("%v refused: %v", tc.opts, err)
		}
		if !tc.ok && !errors.Is(err, rtpolicy.ErrPolicy) {
			t.Errorf("%v: start check %v; want a refusal by the module policy", tc.opts, err)
		}
	}
}
