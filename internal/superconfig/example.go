package superconfig

import (
	"os"
	"path/filepath"
)

// InstalledExample is where the Debian package puts the example super-config.
const InstalledExample = "/usr/share/doc/edgev2/examples/config.toml.example"

// ExampleFile is the example super-config that exists here: the installed
// one, else packaging/config.toml.example of the checkout that holds the
// working directory or the running binary (make build's bin/edgectl); the
// installed path when neither exists.
func ExampleFile() string {
	if _, err := os.Stat(InstalledExample); err == nil {
		return InstalledExample
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			p := filepath.Join(d, "packaging", "config.toml.example")
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				if _, err := os.Stat(p); err == nil {
					return p
				}
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	return InstalledExample
}
