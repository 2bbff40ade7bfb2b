package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/superconfig"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/logstore"
)

// moduleSteps: the module runtime starts a container that gets its SAS token
// from its workload socket, and the hub accepts it.
func moduleSteps(p testenv.TB, run func(string, func() (string, error)) error, b *testenv.Bus, pk *testenv.Polkit, ctx context.Context) error {
	var ctr *testenv.Containerd
	var conn *godbus.Conn
	if err := run("start containerd and edgev2-modrtd", func() (string, error) {
		ctr = testenv.StartContainerd(p)
		dir := testenv.SharedTempDir(p, "demo-modrtd")
		cfg := filepath.Join(dir, "modrtd.toml")
		serviceConfigs["modrtd.toml"] = cfg
		text := fmt.Sprintf("homedir = %q\ncontainerd_address = %q\nnamespace = \"edgev2-demo\"\ntrust_bundle = \"est-ca\"\n"+
			// The module posts to the hub (labcloud) on the host's 127.0.0.1.
			"[policy]\nallow_host_network = [\"telemetry\"]\n", filepath.Join(dir, "home"), ctr.Address)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			return "", err
		}
		// certd signs modules' certificates with modrtd's quickstart edge
		// CA key: the grant compiled from both configs names it.
		certdText, err := os.ReadFile(serviceConfigs["certd.toml"])
		if err != nil {
			return "", err
		}
		rules, err := superconfig.ServiceRulesFor(superconfig.ServiceConfigs{Certd: certdText, Modrtd: []byte(text)})
		if err != nil {
			return "", err
		}
		pk.AddRule(p, "certd-edge-ca-grant", string(rules))
		testenv.StartService(p, b, testenv.ServiceOptions{
			Binary: testenv.BuildBinary(p, "./cmd/edgev2-modrtd"), Args: []string{"--config", cfg},
			User: "root", BusName: rtapi.BusName,
		})
		conn = b.Conn(p)
		return "owns " + rtapi.BusName + ", containerd " + ctr.Address, nil
	}); err != nil {
		return err
	}
	if err := run("import a module image (offline, over the bus as an fd)", func() (string, error) {
		bin := testenv.BuildWorkloadClient(p)
		archive := testenv.BuildImage(p, "edgev2.demo/telemetry:1", testenv.ImageConfig{
			Entrypoint: []string{"/bin/workloadclient"}, Files: map[string]string{"/bin/workloadclient": bin}})
		f, err := os.Open(archive)
		if err != nil {
			return "", err
		}
		defer f.Close()
		var names []string
		if err := conn.Object(rtapi.BusName, rtapi.ObjectPath).Call(rtapi.Interface+".ImportImage", 0, godbus.UnixFD(f.Fd())).Store(&names); err != nil {
			return "", err
		}
		return strings.Join(names, ", "), nil
	}); err != nil {
		return err
	}
	return run("module container signs its SAS token over the workload socket; the hub accepts it", func() (string, error) {
		spec := `{"name":"telemetry","type":"docker","restartPolicy":"never","config":{"settings":{"image":"edgev2.demo/telemetry:1","createOptions":{"HostConfig":{"NetworkMode":"host"}}},"env":{"OTHER_MODULE":{"value":"demo-module"},"WANT_SERVER_CERT":{"value":"1"}}}}`
		var path godbus.ObjectPath
		if err := conn.Object(rtapi.BusName, rtapi.ObjectPath).Call(rtapi.Interface+".CreateModule", 0, "telemetry", spec, map[string]godbus.Variant{}).Store(&path); err != nil {
			return "", err
		}
		obj := conn.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, "modules", "telemetry"))
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			var fd godbus.UnixFD
			if err := obj.Call(rtapi.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{}).Store(&fd); err != nil {
				return "", err
			}
			lf := os.NewFile(uintptr(fd), "logs")
			text, _ := logstore.FramedText(lf)
			lf.Close()
			sc := bufio.NewScanner(strings.NewReader(text))
			for sc.Scan() {
				j, ok := strings.CutPrefix(sc.Text(), "WORKLOAD-RESULT ")
				if !ok {
					continue
				}
				var res map[string]any
				if err := json.Unmarshal([]byte(j), &res); err != nil {
					return "", err
				}
				if res["hub_status"] != float64(204) || res["sign_as_other_status"] != float64(403) ||
					res["server_cert_ok"] != true || res["identity_cert_ok"] != true || res["decrypt_roundtrip"] != true {
					return "", fmt.Errorf("module results: %v", res)
				}
				return "workload sign 200, hub 204; signing as another module: 403; server and identity certificates from the quickstart edge CA verify against the trust bundle; encrypt/decrypt round trip", nil
			}
		}
		return "", fmt.Errorf("the module printed no result")
	})
}
