package modrt

import (
	"context"
	"os"

	"github.com/edgev2/edgev2/fault"
)

// Device is what a module's environment says about the device.
type Device struct {
	DeviceID        string
	HubHostname     string
	GatewayHostname string // "" → the host name
}

// IdentityDirectory is the Identity service as module environments need it.
type IdentityDirectory interface {
	Device(ctx context.Context) (Device, error)
	// ModuleGeneration is the generation id of the module's identity;
	// fault.NotFound when it has none.
	ModuleGeneration(ctx context.Context, module string) (string, error)
	// CreateModule makes the module's identity and returns its generation id.
	CreateModule(ctx context.Context, module string) (string, error)
}

// IdentityEnv gives each module an identity in IoT Hub (created if
// missing) and the IOTEDGE_* environment aziot-edged gives modules. It is
// the runtime's Identities.
type IdentityEnv struct {
	Directory IdentityDirectory
	Hostname  func() (string, error) // os.Hostname if nil
}

var _ Identities = IdentityEnv{}

// ModuleEnv is the module's IOTEDGE_* environment.
func (e IdentityEnv) ModuleEnv(ctx context.Context, module string) (map[string]string, error) {
	dev, err := e.Directory.Device(ctx)
	if err != nil {
		return nil, err
	}
	gen, err := e.Directory.ModuleGeneration(ctx, module)
	if fault.Is(err, fault.NotFound) {
		gen, err = e.Directory.CreateModule(ctx, module)
	}
	if err != nil {
		return nil, err
	}
	gateway := dev.GatewayHostname
	if gateway == "" {
		hostname := e.Hostname
		if hostname == nil {
			hostname = os.Hostname
		}
		gateway, _ = hostname()
	}
	return map[string]string{
		"IOTEDGE_WORKLOADURI":        "unix://" + workloadDir + "/workload.sock",
		"IOTEDGE_DEVICEID":           dev.DeviceID,
		"IOTEDGE_MODULEID":           module,
		"IOTEDGE_MODULEGENERATIONID": gen,
		"IOTEDGE_IOTHUBHOSTNAME":     dev.HubHostname,
		"IOTEDGE_AUTHSCHEME":         "sasToken",
		"IOTEDGE_APIVERSION":         "2019-01-30",
		"IOTEDGE_GATEWAYHOSTNAME":    gateway,
	}, nil
}
