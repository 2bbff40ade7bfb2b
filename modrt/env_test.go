package modrt

import (
	"context"
	"reflect"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

type fakeDirectory struct {
	dev     Device
	modules map[string]string
	created []string
}

func (f *fakeDirectory) Device(context.Context) (Device, error) { return f.dev, nil }
func (f *fakeDirectory) ModuleGeneration(_ context.Context, m string) (string, error) {
	g, ok := f.modules[m]
	if !ok {
		return "", fault.New(fault.NotFound, "no module identity %s", m)
	}
	return g, nil
}
func (f *fakeDirectory) CreateModule(_ context.Context, m string) (string, error) {
	f.created = append(f.created, m)
	f.modules[m] = "new-gen"
	return "new-gen", nil
}

func TestModuleEnvNamesTheModuleAndCreatesMissingIdentities(t *testing.T) {
	dir := &fakeDirectory{dev: Device{DeviceID: "dev-1", HubHostname: "hub.example"}, modules: map[string]string{"sensor": "g1"}}
	e := IdentityEnv{Directory: dir, Hostname: func() (string, error) { return "gw-host", nil }}
	env, err := e.ModuleEnv(context.Background(), "sensor")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"IOTEDGE_WORKLOADURI": "unix:///var/run/iotedge/workload.sock", "IOTEDGE_DEVICEID": "dev-1", "IOTEDGE_MODULEID": "sensor",
		"IOTEDGE_MODULEGENERATIONID": "g1", "IOTEDGE_IOTHUBHOSTNAME": "hub.example", "IOTEDGE_AUTHSCHEME": "sasToken",
		"IOTEDGE_APIVERSION": "2019-01-30", "IOTEDGE_GATEWAYHOSTNAME": "gw-host",
	}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("ModuleEnv = %v\nwant %v", env, want)
	}
	if len(dir.created) != 0 {
		t.Fatalf("created identities %v for a module that has one", dir.created)
	}
	dir.dev.GatewayHostname = "gateway.example"
	env, err = e.ModuleEnv(context.Background(), "fresh")
	if err != nil || env["IOTEDGE_MODULEGENERATIONID"] != "new-gen" || env["IOTEDGE_GATEWAYHOSTNAME"] != "gateway.example" {
		t.Fatalf("ModuleEnv(fresh) = %v, %v; want the new identity's generation and the configured gateway", env, err)
	}
	if !reflect.DeepEqual(dir.created, []string{"fresh"}) {
		t.Fatalf("created %v, want [fresh]", dir.created)
	}
}
