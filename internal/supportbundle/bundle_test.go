package supportbundle

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type fakeModules struct{ logs map[string]string }

func (f fakeModules) List(context.Context) ([]string, error) {
	var ns []string
	for n := range f.logs {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns, nil
}
func (f fakeModules) Describe(_ context.Context, name string) (any, error) {
	return map[string]string{"name": name}, nil
}
func (f fakeModules) Logs(_ context.Context, name string, _, _ time.Time, _ int) (string, error) {
	return f.logs[name], nil
}

// TestCollectHonoursTheQueryAndRedacts: since and until bound the
// journals, edge_runtime_only keeps edgeAgent and edgeHub, and secrets in
// configs, journals, module logs and the check report are redacted.
func TestCollectHonoursTheQueryAndRedacts(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("hostname = \"gw\"\n[provisioning]\nconnection_string = \"HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0QQ==\"\n"), 0o600)
	var journalArgs [][]string
	since, until := time.Unix(1700000000, 0), time.Unix(1700003600, 0)
	o := Options{SuperConfig: filepath.Join(dir, "config.toml"), ConfigDir: dir, Since: since, Until: until, EdgeRuntimeOnly: true,
		Check: func(context.Context) ([]byte, error) {
			return []byte(`{"status":"ok","m":"https://u:c2VjcmV0Qg@x"}`), nil
		},
		Modules: fakeModules{map[string]string{"edgeAgent": "agent line SharedAccessSignature sr=h%2Fdevices%2Fd&sig=c2VjcmV0Qw&se=1\n", "edgeHub": "hub line\n", "custom": "custom line\n"}},
		Journal: func(_ context.Context, args ...string) ([]byte, error) {
			journalArgs = append(journalArgs, args)
			return []byte("SharedAccessKey=c2VjcmV0RA== in a log\n"), nil
		}}
	var buf bytes.Buffer
	if err := Write(&buf, Collect(context.Background(), o)); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
		for _, s := range []string{"c2VjcmV0QQ", "c2VjcmV0Qg", "c2VjcmV0Qw", "c2VjcmV0RA"} {
			if strings.Contains(string(b), s) {
				t.Errorf("%s holds secret %s", f.Name, s)
			}
		}
	}
	for _, want := range []string{"check.json", "configs/config.toml", "configs/keyd.toml.missing.txt", "logs/edgev2-modrtd.log",
		"modules/list.json", "modules/edgeAgent.log", "modules/edgeHub.log"} {
		if _, ok := files[want]; !ok {
			t.Errorf("no %s in %v", want, slices.Sorted(func(yield func(string) bool) {
				for k := range files {
					if !yield(k) {
						return
					}
				}
			}))
		}
	}
	if _, ok := files["modules/custom.log"]; ok || strings.Contains(files["modules/list.json"], "custom") {
		t.Error("edge_runtime_only kept a custom module")
	}
	if len(journalArgs) != len(Services) {
		t.Fatalf("journalctl ran %d times", len(journalArgs))
	}
	if a := strings.Join(journalArgs[0], " "); !strings.Contains(a, "--since @1700000000") || !strings.Contains(a, "--until @1700003600") {
		t.Errorf("journalctl %s", a)
	}
	if !strings.Contains(files["configs/config.toml"], "DeviceId=d") {
		t.Errorf("config.toml lost what helps diagnosis:\n%s", files["configs/config.toml"])
	}
}

func TestCollectSaysWhatItCouldNotGet(t *testing.T) {
	o := Options{SuperConfig: "/nonexistent/config.toml", ConfigDir: "/nonexistent",
		Check:              func(context.Context) ([]byte, error) { return nil, errors.New("edgectl is not installed") },
		ModulesUnavailable: "no bus",
		Journal:            func(context.Context, ...string) ([]byte, error) { return nil, errors.New("exit status 1") }}
	names := map[string]string{}
	for _, e := range Collect(context.Background(), o) {
		names[e.Name] = string(e.Data)
	}
	if !strings.Contains(names["check.missing.txt"], "not installed") || !strings.Contains(names["modules/README.txt"], "no bus") ||
		!strings.Contains(names["logs/edgev2-keyd.log"], "journalctl: exit status 1") {
		t.Errorf("bundle %v", names)
	}
}
