package modspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

// edgeAgentSpec is what edgeAgent posts to the management API for edgeHub:
// env as a list, createOptions as an object with what edgeAgent injects
// (workload socket bind, CapDrop, its network endpoint, labels).
var edgeAgentSpec = readTestdata("testdata/edgeagent_spec.json")

func readTestdata(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParseSpecReadsManagementAPIShape(t *testing.T) {
	s, err := ParseSpec([]byte(edgeAgentSpec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "edgeHub" || s.Type != "docker" || s.ImagePullPolicy != PullOnCreate {
		t.Errorf("name/type/pull = %q %q %q", s.Name, s.Type, s.ImagePullPolicy)
	}
	if s.RestartPolicy != RestartOnFailure {
		t.Errorf("default restartPolicy = %q, want on-failure", s.RestartPolicy)
	}
	wantEnv := []EnvVar{{"IOTEDGE_MODULEID", "$edgeHub"}, {"SslProtocols", "tls1.2"}}
	if !reflect.DeepEqual(s.Config.Env, wantEnv) {
		t.Errorf("env = %v", s.Config.Env)
	}
	co := s.Config.Settings.CreateOptions
	if got := co.HostConfig.Binds; len(got) != 1 || got[0] != "/var/run/iotedge/workload.sock:/var/run/iotedge/workload.sock" {
		t.Errorf("binds = %v", got)
	}
	if got := co.HostConfig.CapDrop; !reflect.DeepEqual(got, []string{"CAP_CHOWN", "CAP_SETUID"}) {
		t.Errorf("capdrop = %v", got)
	}
	if len(co.ExposedPorts) != 2 || len(co.NetworkingConfig) == 0 || len(co.HostConfig.PortBindings) == 0 {
		t.Errorf("ports/networking not kept: %+v", co)
	}
	if a := s.Config.Settings.Auth; a == nil || a.Password != "s3cret-pw" || a.ServerAddress != "myacr.azurecr.io" {
		t.Errorf("auth = %v", a)
	}
	if ref, err := s.ImageRef(); err != nil || ref != "mcr.microsoft.com/azureiotedge-hub:1.4" {
		t.Errorf("ImageRef = %q, %v", ref, err)
	}
}

func TestParseSpecReadsDeploymentManifestShape(t *testing.T) {
	// env as a map of {"value": ...}, createOptions as a string, split over
	// createOptions01 as manifests do, edgeAgent's restart policy name.
	doc := `{"name": "sensor", "type": "docker", "restartPolicy": "on-unhealthy",
	  "config": {"settings": {"image": "alpine",
	     "createOptions": "{\"Env\":[\"A=1\"],\"HostConfig\":{\"Binds\":[\"/data",
	     "createOptions01": ":/data:ro\"]}}"},
	   "env": {"B_VAR": {"value": "two"}, "A_VAR": {"value": 5}, "C_VAR": {"value": true}}}}`
	s, err := ParseSpec([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if s.RestartPolicy != RestartAlways {
		t.Errorf("on-unhealthy read as %q, want always", s.RestartPolicy)
	}
	wantEnv := []EnvVar{{"A_VAR", "5"}, {"B_VAR", "two"}, {"C_VAR", "true"}}
	if !reflect.DeepEqual(s.Config.Env, wantEnv) {
		t.Errorf("env = %v, want %v (sorted by key)", s.Config.Env, wantEnv)
	}
	co := s.Config.Settings.CreateOptions
	if !reflect.DeepEqual(co.Env, []string{"A=1"}) || !reflect.DeepEqual(co.HostConfig.Binds, []string{"/data:/data:ro"}) {
		t.Errorf("createOptions = %+v", co)
	}
	if ref, _ := s.ImageRef(); ref != "docker.io/library/alpine:latest" {
		t.Errorf("ImageRef = %q, want docker.io/library/alpine:latest", ref)
	}
	if s.Config.Settings.Image != "alpine" {
		t.Errorf("settings.image rewritten to %q; edgeAgent compares it with what it sent", s.Config.Settings.Image)
	}
}

func TestParseSpecAcceptsEmptyCreateOptionsForms(t *testing.T) {
	for _, co := range []string{`""`, `"  "`, `null`, `{}`, `"{}"`} {
		doc := `{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":` + co + `}}}`
		s, err := ParseSpec([]byte(doc))
		if err != nil {
			t.Errorf("createOptions %s: %v", co, err)
			continue
		}
		if !reflect.DeepEqual(s.Config.Settings.CreateOptions, CreateOptions{}) {
			t.Errorf("createOptions %s: got %+v", co, s.Config.Settings.CreateOptions)
		}
	}
}

func TestParseSpecIgnoresZeroValuedUnsupportedFields(t *testing.T) {
	// Serializers write unset fields as null, false, 0, "" or {}; they ask for nothing.
	doc := `{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":{
	  "Tty": false, "Domainname": "", "StopTimeout": null, "Volumes": {},
	  "AttachStdout": true, "Image": "alpine",
	  "HostConfig": {"Devices": [], "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "Sysctls": null,
	     "Mounts": [{"Type": "tmpfs", "Target": "/tmp", "Consistency": "default", "VolumeOptions": null}],
	     "LogConfig": {"Type": "json-file", "Config": {}}}}}}}`
	if _, err := ParseSpec([]byte(doc)); err != nil {
		t.Fatal(err)
	}
}

func TestParseSpecRejects(t *testing.T) {
	spec := func(name, settings, env string) string {
		return fmt.Sprintf(`{"name":%q,"type":"docker","config":{"settings":%s,"env":%s}}`, name, settings, env)
	}
	img := func(co string) string { return `{"image":"alpine","createOptions":` + co + `}` }
	tests := []struct {
		name, doc, want string
	}{
		{"empty", ``, "empty"},
		{"not JSON", `{"name":`, "not valid JSON"},
		{"array", `[]`, "wrong type"},
		{"huge", `{"name":"` + strings.Repeat("a", MaxSpecSize) + `"}`, "more than"},
		{"name wrong type", `{"name": 5}`, "wrong type"},
		{"no settings", `{"name":"m","type":"docker","config":{}}`, "config.settings is missing"},
		{"type", `{"name":"m","type":"rkt","config":{"settings":{"image":"alpine"}}}`, `type "rkt"`},
		{"pull policy", `{"name":"m","type":"docker","imagePullPolicy":"always","config":{"settings":{"image":"alpine"}}}`, "imagePullPolicy"},
		{"restart policy", `{"name":"m","type":"docker","restartPolicy":"sometimes","config":{"settings":{"image":"alpine"}}}`, "restartPolicy"},
		{"traversal name", spec("../x", img(`{}`), `[]`), "module name"},
		{"slash name", spec("a/b", img(`{}`), `[]`), "module name"},
		{"empty name", spec("", img(`{}`), `[]`), "module name is empty"},
		{"long name", spec(strings.Repeat("n", 200), img(`{}`), `[]`), "at most 64"},
		{"dollar name", spec("$edgeAgent", img(`{}`), `[]`), `name the module "edgeAgent"`},
		{"read-only bind taking the host's mounts", spec("m", img(`{"HostConfig":{"Binds":["/media:/media:ro,rslave"]}}`), `[]`), "propagation"},
		{"read-only mount taking the host's mounts", spec("m", img(`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/media","Target":"/media","ReadOnly":true,"BindOptions":{"Propagation":"rshared"}}]}}`), `[]`), "propagation"},
		{"no image", spec("m", `{}`, `[]`), "image is empty"},
		{"image with space", spec("m", `{"image":"alpine latest"}`, `[]`), "space or control"},
		{"image with newline", spec("m", `{"image":"alpine\n"}`, `[]`), "space or control"},
		{"image upper case", spec("m", `{"image":"Alpine"}`, `[]`), "not an image reference"},
		{"bad digest", spec("m", `{"image":"alpine","digest":"md5:x"}`, `[]`), "digest"},
		{"image not string", spec("m", `{"image":5}`, `[]`), "settings.image must be a string"},
		{"auth not object", spec("m", `{"image":"alpine","auth":"u:pw"}`, `[]`), "auth must be"},
		{"env no key", spec("m", img(`{}`), `[{"value":"x"}]`), "config.env[0] has no key"},
		{"env key with =", spec("m", img(`{}`), `[{"key":"A=B","value":"x"}]`), "contains '='"},
		{"env repeated", spec("m", img(`{}`), `[{"key":"A","value":"1"},{"key":"A","value":"2"}]`), `repeats "A"`},
		{"env value object", spec("m", img(`{}`), `{"A":{"value":{}}}`), "must be a string"},
		{"env string", spec("m", img(`{}`), `"A=1"`), "config.env must be"},
		{"createOptions number", spec("m", img(`5`), `[]`), "createOptions must be a JSON object"},
		{"createOptions string not JSON", spec("m", img(`"{\"Env\":"`), `[]`), "createOptions must be a JSON object"},
		{"chunk gap", spec("m", `{"image":"alpine","createOptions":"{","createOptions02":"}"}`, `[]`), "createOptions01 is missing"},
		{"devices", spec("m", img(`{"HostConfig":{"Devices":[{"PathOnHost":"/dev/ttyS0"}]}}`), `[]`), "createOptions.HostConfig.Devices is not supported"},
		{"sysctls", spec("m", img(`{"HostConfig":{"Sysctls":{"net.ipv4.ip_forward":"1"}}}`), `[]`), "HostConfig.Sysctls"},
		{"security opt", spec("m", img(`{"HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}`), `[]`), "HostConfig.SecurityOpt"},
		{"ulimits", spec("m", img(`{"HostConfig":{"Ulimits":[{"Name":"nofile","Soft":1,"Hard":2}]}}`), `[]`), "HostConfig.Ulimits"},
		{"restart policy field", spec("m", img(`{"HostConfig":{"RestartPolicy":{"Name":"always"}}}`), `[]`), "use the module's restartPolicy"},
		{"top-level unknown", spec("m", img(`{"Healthcheck":{"Test":["CMD","true"]}}`), `[]`), "createOptions.Healthcheck"},
		{"case", spec("m", img(`{"hostConfig":{"Privileged":true}}`), `[]`), "did you mean HostConfig"},
		{"mount unknown", spec("m", img(`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/a","Target":"/b","VolumeOptions":{"NoCopy":true}}]}}`), `[]`), "Mounts[0].VolumeOptions"},
		{"memory string", spec("m", img(`{"HostConfig":{"Memory":"1g"}}`), `[]`), "HostConfig.Memory must be a whole number"},
		{"memory tiny", spec("m", img(`{"HostConfig":{"Memory":1024}}`), `[]`), "below the minimum"},
		{"memory negative", spec("m", img(`{"HostConfig":{"Memory":-1}}`), `[]`), "below the minimum"},
		{"cpus tiny", spec("m", img(`{"HostConfig":{"NanoCpus":1000}}`), `[]`), "NanoCpus"},
		{"network bridge", spec("m", img(`{"HostConfig":{"NetworkMode":"bridge"}}`), `[]`), `NetworkMode "bridge"`},
		{"network container", spec("m", img(`{"HostConfig":{"NetworkMode":"container:x"}}`), `[]`), `NetworkMode "container:x"`},
		{"ports random", spec("m", img(`{"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":""}]}}}`), `[]`), "random ports are not supported"},
		{"ports loopback", spec("m", img(`{"HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]}}}`), `[]`), "loopback"},
		{"ports proto", spec("m", img(`{"HostConfig":{"PortBindings":{"80/sctp":[{"HostPort":"8080"}]}}}`), `[]`), "not tcp or udp"},
		{"ports twice", spec("m", img(`{"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}],"81/tcp":[{"HostPort":"8080"}]}}}`), `[]`), "bound twice"},
		{"ports shape", spec("m", img(`{"HostConfig":{"PortBindings":["80:80"]}}`), `[]`), "must be an object"},
		{"exposed port", spec("m", img(`{"ExposedPorts":{"http":{}}}`), `[]`), `ExposedPorts "http"`},
		{"ports without network", spec("m", img(`{"ExposedPorts":{"80/tcp":{}},"HostConfig":{"NetworkMode":"none"}}`), `[]`), "need NetworkMode"},
		{"pid container", spec("m", img(`{"HostConfig":{"PidMode":"container:x"}}`), `[]`), "PidMode"},
		{"cap unknown", spec("m", img(`{"HostConfig":{"CapAdd":["NET_WIZARD"]}}`), `[]`), `CapAdd "NET_WIZARD"`},
		{"named volume", spec("m", img(`{"HostConfig":{"Binds":["data:/data"]}}`), `[]`), "named volumes are not supported yet"},
		{"anonymous volume", spec("m", img(`{"HostConfig":{"Binds":["/data"]}}`), `[]`), "anonymous volumes"},
		{"bind dotdot", spec("m", img(`{"HostConfig":{"Binds":["/data/../etc:/x"]}}`), `[]`), `".." in path`},
		{"bind dest relative", spec("m", img(`{"HostConfig":{"Binds":["/data:x"]}}`), `[]`), "not an absolute path"},
		{"bind over root", spec("m", img(`{"HostConfig":{"Binds":["/data:/"]}}`), `[]`), "container's root"},
		{"bind option", spec("m", img(`{"HostConfig":{"Binds":["/data:/data:Z"]}}`), `[]`), "SELinux"},
		{"bind ro twice", spec("m", img(`{"HostConfig":{"Binds":["/data:/data:ro,rw"]}}`), `[]`), "repeats ro/rw"},
		{"duplicate destination", spec("m", img(`{"HostConfig":{"Binds":["/a:/data","/b:/data"]}}`), `[]`), "both mount on"},
		{"volume mount", spec("m", img(`{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v"}]}}`), `[]`), "named volumes are not supported yet"},
		{"tmpfs with source", spec("m", img(`{"HostConfig":{"Mounts":[{"Type":"tmpfs","Source":"/x","Target":"/v"}]}}`), `[]`), "no Source"},
		{"log driver", spec("m", img(`{"HostConfig":{"LogConfig":{"Type":"syslog"}}}`), `[]`), "LogConfig.Type"},
		{"log unlimited", spec("m", img(`{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"-1"}}}}`), `[]`), "max-size"},
		{"log option", spec("m", img(`{"HostConfig":{"LogConfig":{"Config":{"compress":"true"}}}}`), `[]`), "LogConfig.Config"},
		{"env without =", spec("m", img(`{"Env":["HOME"]}`), `[]`), "not KEY=value"},
		{"workdir relative", spec("m", img(`{"WorkingDir":"app"}`), `[]`), "WorkingDir"},
		{"user with space", spec("m", img(`{"User":"root user"}`), `[]`), "createOptions.User"},
		{"hostname", spec("m", img(`{"Hostname":"-bad-"}`), `[]`), "Hostname"},
		{"reserved label", spec("m", img(`{"Labels":{"org.edgev2.owner":"me"}}`), `[]`), "belong to the runtime"},
		{"huge label", spec("m", img(`{"Labels":{"big":"`+strings.Repeat("x", 5000)+`"}}`), `[]`), "containerd's 4096"},
		{"cmd NUL", spec("m", img(`{"Cmd":["a\u0000b"]}`), `[]`), "NUL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted")
			}
			if !fault.Is(err, fault.InvalidArgs) {
				t.Errorf("kind %v, want InvalidArgs: %v", fault.KindOf(err), err)
			}
			if !strings.Contains(fault.Message(err), tc.want) {
				t.Errorf("message %q does not contain %q", fault.Message(err), tc.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	good := []string{"edgeAgent", "edgeHub", "a", "0", "SimulatedTemperatureSensor", "my_module.v2-x", strings.Repeat("a", 64)}
	bad := []string{"", "$edgeAgent", "../x", "a/b", ".hidden", "-x", "_x", "a b", "a\x00b", "é", strings.Repeat("a", 65), strings.Repeat("a", 200), "a:b", "a\n"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v", n, err)
		}
	}
	for _, n := range bad {
		err := ValidateName(n)
		if !fault.Is(err, fault.InvalidArgs) {
			t.Errorf("ValidateName(%q) = %v, want InvalidArgs", n, err)
		}
		if err != nil && len(fault.Message(err)) > 300 {
			t.Errorf("ValidateName(%q) message not cut short: %d bytes", n, len(fault.Message(err)))
		}
	}
}

func TestImageRefNormalisesLikeContainerd(t *testing.T) {
	tests := map[string]string{
		"alpine":                   "docker.io/library/alpine:latest",
		"library/alpine:3.19":      "docker.io/library/alpine:3.19",
		"127.0.0.1:5000/sensor:1":  "127.0.0.1:5000/sensor:1",
		"mcr.microsoft.com/a/b:1":  "mcr.microsoft.com/a/b:1",
		"alpine@sha256:" + hex64(): "docker.io/library/alpine@sha256:" + hex64(),
	}
	for in, want := range tests {
		s := &Spec{Name: "m", Type: TypeDocker, Config: SpecConfig{Settings: Settings{Image: in}}}
		got, err := s.ImageRef()
		if err != nil || got != want {
			t.Errorf("ImageRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func hex64() string { return strings.Repeat("ab", 32) }

func TestSpecMarshalsToManagementAPIShape(t *testing.T) {
	s, err := ParseSpec([]byte(edgeAgentSpec))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var generic struct {
		Config struct {
			Settings struct {
				CreateOptions map[string]any `json:"createOptions"`
			} `json:"settings"`
			Env []map[string]string `json:"env"`
		} `json:"config"`
	}
	if err := json.Unmarshal(out, &generic); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if generic.Config.Settings.CreateOptions["HostConfig"] == nil || len(generic.Config.Env) != 2 || generic.Config.Env[0]["key"] != "IOTEDGE_MODULEID" {
		t.Errorf("marshalled shape: %s", out)
	}
	again, err := ParseSpec(out)
	if err != nil {
		t.Fatalf("reparse: %v", err)
	}
	if !reflect.DeepEqual(again, s) {
		t.Errorf("round trip changed the spec:\n%+v\n%+v", again, s)
	}
}

func TestCredentialsStayOutOfTextAndRedactedCopies(t *testing.T) {
	s, err := ParseSpec([]byte(edgeAgentSpec))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(format, s); strings.Contains(out, "s3cret-pw") {
			t.Errorf("%s prints the password: %s", format, out)
		}
	}
	r := s.Redacted()
	if r.Config.Settings.Auth != nil || s.Config.Settings.Auth == nil {
		t.Errorf("Redacted: copy auth %v, original auth %v", r.Config.Settings.Auth, s.Config.Settings.Auth)
	}
	bad := strings.Replace(edgeAgentSpec, `"password": "s3cret-pw"`, `"password": ["s3cret-pw"]`, 1)
	_, err = ParseSpec([]byte(bad))
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("bad auth error = %v", err)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(edgeAgentSpec))
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"alpine","createOptions":"{\"Cmd\":\"x\"}"},"env":{"A":{"value":"1"}}}}`))
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"a","createOptions":"{\"HostConfig\":","createOptions01":"{\"Binds\":[\"/a:/b:ro\"]}}"}}}`))
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"a","createOptions":{"Entrypoint":[],"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1,"Mode":511}}],"LogConfig":{"Config":{"max-size":"1.5m","max-file":"2"}}}}}}}`))
	f.Add([]byte(`{"name":"0","type":"docker","config":{"settings":{"image":"0","createOptions":{"HostConfig":{"Binds":[],"LogConfig":{"Config":{}}},"Labels":{}}}}}`))
	// The decoder's tables: nested objects, ignored keys, zero-valued and
	// misspelt unknown keys.
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"a","createOptions":{"Image":5,"AttachStdout":true,"hostconfig":{},"HostConfig":{"Mounts":[{"Type":"bind","Source":"/a","Target":"/b","Consistency":"cached","BindOptions":{"Propagation":"rslave","NonRecursive":true,"X":0}}],"LogConfig":{"Type":null,"Config":null},"Devices":[]}}}}}`))
	f.Add([]byte(`{"name":"m","type":"docker","config":{"settings":{"image":"a","createOptions":{"ExposedPorts":{"80/tcp":{}},"NetworkingConfig":{"EndpointsConfig":{}},"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}]},"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Mode":-1}}]}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			if fault.KindOf(err) != fault.InvalidArgs {
				t.Fatalf("error of kind %v: %v", fault.KindOf(err), err)
			}
			return
		}
		// What was accepted marshals to a document that parses to the same.
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseSpec(out)
		if err != nil {
			t.Fatalf("reparse of %s: %v", out, err)
		}
		out2, _ := json.Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip differs:\n%s\n%s", out, out2)
		}
		s.Labels()
		s.LogLimits()
	})
}

// TestEnvEntryWithoutEqualsShowsNoValue: an Env entry without '=' is most
// often KEY:value or "KEY value" typed for KEY=value, or a value pasted
// alone; the error (edgeAgent's status, edgectl's output) names the entry,
// and the variable's name when it is one, never the value.
func TestEnvEntryWithoutEqualsShowsNoValue(t *testing.T) {
	tests := []struct{ entry, shown string }{
		{"API_TOKEN:s3cr3t-Tail", `"API_TOKEN"`},
		{"API_TOKEN s3cr3t-Tail", `"API_TOKEN"`},
		{"s3cr3t-Tail", "not shown"},
		{"ghp_s3cr3tTail09", "not shown"}, // a token pasted alone
		{"api_token:s3cr3t", "not shown"},
		{"HOME", `"HOME"`},
	}
	for _, tt := range tests {
		doc, _ := json.Marshal(map[string]any{"name": "m", "type": "docker", "config": map[string]any{"settings": map[string]any{
			"image": "alpine", "createOptions": map[string]any{"Env": []string{tt.entry}}}}})
		_, err := ParseSpec(doc)
		if err == nil || !strings.Contains(err.Error(), "Env[0]") || !strings.Contains(err.Error(), tt.shown) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Env [%q]: %v; want Env[0] named, showing %s and no value", tt.entry, err, tt.shown)
		}
	}
}
