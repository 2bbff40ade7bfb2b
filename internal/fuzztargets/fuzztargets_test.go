package fuzztargets

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/edgev2/edgev2/internal/testenv"
)

const module = "github.com/edgev2/edgev2"

// parsedTargets walks the repository and returns "PACKAGE TARGET" for every
// function that `go test` counts as a fuzz target: in a _test.go file, named
// Fuzz followed by a non-lowercase letter, one parameter of type *testing.F.
func parsedTargets(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "bin" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := module
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isFuzzName(fn.Name.Name) || fn.Type.Params.NumFields() != 1 {
				continue
			}
			star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr)
			if sel, ok2 := star.X.(*ast.SelectorExpr); ok && ok2 && sel.Sel.Name == "F" {
				out = append(out, pkg+" "+fn.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// isFuzzName is go test's rule (cmd/go/internal/load.isTest).
func isFuzzName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Fuzz")
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return !unicode.IsLower(r)
}

func TestMakeFuzzFindsEveryFuzzTarget(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		testenv.Missing(t, "make", err.Error())
	}
	root := testenv.RepoRoot()
	cmd := exec.Command("make", "-s", "--no-print-directory", "fuzz-targets")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make fuzz-targets: %v", err)
	}
	listed := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(listed)
	parsed := parsedTargets(t, root)
	have := map[string]bool{}
	for _, l := range listed {
		have[l] = true
	}
	for _, p := range parsed {
		if !have[p] {
			t.Errorf("make fuzz would miss %s", p)
		}
		delete(have, p)
	}
	for l := range have {
		t.Errorf("make fuzz lists %s, which is not a fuzz target", l)
	}
	// The three that the hand-written list had left out.
	for _, want := range []string{module + "/modrt/mgmt FuzzRequestBodies", module + "/identity/dps FuzzParseAuthenticationKey",
		module + "/internal/labcloud/dps FuzzParseEndorsementKey"} {
		if !contains(listed, want) {
			t.Errorf("make fuzz-targets does not list %s", want)
		}
	}
	if len(parsed) < 25 {
		t.Errorf("only %d fuzz targets found; the walk may be wrong: %v", len(parsed), parsed)
	}
	t.Logf("%d fuzz targets", len(listed))
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
