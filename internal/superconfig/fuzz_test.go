package superconfig

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgev2/edgev2/internal/config"
)

// FuzzParse: any text either parses and compiles into files every daemon
// accepts, or is refused with a *config.Error; nothing panics.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/apply/*/config.toml")
	seeds = append(seeds, "../../packaging/config.toml.example")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("[[principal]]\nuser = \"a\"\nkeys = [\"*\"]\n[[principal]]\ngroup = \"g\"\nmodules_manage = [\"*\"]\n"))
	f.Add([]byte("[cert_issuance.certs.\"a.b\"]\nmethod = \"self_signed\"\n"))
	old := LookupUID
	LookupUID = func(string) (uint32, error) { return 1000, nil }
	defer func() { LookupUID = old }()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error %v is %T, not *config.Error", err, err)
			}
			if ce.Line < 0 || ce.File != "fuzz.toml" {
				t.Fatalf("error names %s:%d", ce.File, ce.Line)
			}
			return
		}
		out, err := Compile(c)
		if err != nil {
			t.Fatalf("Compile of a config Parse accepted: %v", err)
		}
		for _, fl := range out.Files {
			if err := parseWithDaemon(fl); err != nil {
				t.Fatalf("%s refused by its daemon: %v\n%s", fl.Path, err, fl.Data)
			}
		}
	})
}
