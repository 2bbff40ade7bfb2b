package client

import (
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestProgressOfTakesOnlyThisPullsSignals(t *testing.T) {
	sig := func(path godbus.ObjectPath, name string, body ...any) *godbus.Signal {
		return &godbus.Signal{Path: path, Name: name, Body: body}
	}
	const ref = "reg:5000/a/b:1"
	cases := []struct {
		name string
		s    *godbus.Signal
		ok   bool
	}{
		{"this pull", sig(rootPath, iface+".PullProgress", ref, uint64(10), uint64(20)), true},
		{"another image", sig(rootPath, iface+".PullProgress", "other:1", uint64(10), uint64(20)), false},
		{"another member", sig(rootPath, iface+".Other", ref, uint64(10), uint64(20)), false},
		{"another object", sig("/elsewhere", iface+".PullProgress", ref, uint64(10), uint64(20)), false},
		{"wrong types", sig(rootPath, iface+".PullProgress", ref, int32(10), uint64(20)), false},
		{"short body", sig(rootPath, iface+".PullProgress", ref), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		p, ok := progressOf(c.s, ref)
		if ok != c.ok || (ok && (p.Done != 10 || p.Total != 20 || p.Ref != ref)) {
			t.Errorf("%s: %+v, %v", c.name, p, ok)
		}
	}
}
