package main

import (
	"context"
	"fmt"
	"os"
	"time"

	cclient "github.com/edgev2/edgev2/certs/client"
	iclient "github.com/edgev2/edgev2/identity/client"
	"github.com/edgev2/edgev2/internal/fault"
	"github.com/edgev2/edgev2/modrt"
	"github.com/edgev2/edgev2/modrt/workload"
)

// workloadBackend serves the workload API from the Identity and
// Certificates services and the runtime's view of module processes.
type workloadBackend struct {
	rt    *modrt.Runtime
	ids   *iclient.Client
	certs *cclient.Client
	trust string
}

var _ workload.Backend = workloadBackend{}

func (b workloadBackend) SignAsModule(ctx context.Context, module, key string, data []byte) ([]byte, error) {
	return b.ids.SignAsModule(ctx, module, key, data)
}

func (b workloadBackend) TrustBundle(ctx context.Context) (string, error) {
	if b.trust == "" {
		return "", fault.New(fault.NotFound, "no trust bundle is configured (trust_bundle in modrtd.toml)")
	}
	return b.certs.Get(ctx, b.trust)
}

// OwnsPid: a process is the module's if it lives in the pid namespace of
// the module's task (two readlinks, no containerd round trip); modules that
// share the host's pid namespace fall back to the task's process list.
func (b workloadBackend) OwnsPid(ctx context.Context, module string, pid int32) bool {
	// A module may call in the instant its task starts, before the runtime
	// has recorded it: look again for up to a second before refusing.
	for i := 0; i < 20; i++ {
		if b.ownsPid(ctx, module, pid) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

func (b workloadBackend) ownsPid(ctx context.Context, module string, pid int32) bool {
	st, err := b.rt.Status(ctx, module)
	if err != nil {
		return false
	}
	if st.Pid != 0 {
		hostNS, _ := os.Readlink("/proc/self/ns/pid")
		taskNS, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", st.Pid))
		peerNS, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err1 == nil && err2 == nil && taskNS != hostNS && peerNS == taskNS {
			return true
		}
	}
	// Not shown by the fast path (the task just started and its pid is not
	// recorded yet, or it shares the host's pid namespace): ask containerd.
	pids, err := b.rt.Pids(ctx, module)
	if err != nil {
		return false
	}
	for _, p := range pids {
		if int32(p) == pid {
			return true
		}
	}
	return false
}

// moduleIdentities gives each module an identity in IoT Hub (creating it
// if missing) and the IOTEDGE_* environment aziot-edged gives modules.
type moduleIdentities struct{ ids *iclient.Client }

func (m moduleIdentities) ModuleEnv(ctx context.Context, module string) (map[string]string, error) {
	dev, err := m.ids.DeviceIdentity(ctx)
	if err != nil {
		return nil, err
	}
	mod, err := m.ids.Module(ctx, module)
	if fault.Is(err, fault.NotFound) {
		mod, err = m.ids.CreateModule(ctx, module, "edgev2-modrtd")
	}
	if err != nil {
		return nil, err
	}
	gateway := dev.S("gateway_hostname")
	if gateway == "" {
		gateway, _ = os.Hostname()
	}
	return map[string]string{
		"IOTEDGE_WORKLOADURI":        "unix:///var/run/iotedge/workload.sock",
		"IOTEDGE_DEVICEID":           dev.S("device_id"),
		"IOTEDGE_MODULEID":           module,
		"IOTEDGE_MODULEGENERATIONID": mod.S("generation_id"),
		"IOTEDGE_IOTHUBHOSTNAME":     dev.S("hub_hostname"),
		"IOTEDGE_AUTHSCHEME":         "sasToken",
		"IOTEDGE_APIVERSION":         "2019-01-30",
		"IOTEDGE_GATEWAYHOSTNAME":    gateway,
	}, nil
}
