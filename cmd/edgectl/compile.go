package main

import (
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/internal/superconfig"
)

// compileSuperConfig is config apply's compiler: the super-config to the
// files to install.
func compileSuperConfig(path string) ([]installFile, error) {
	c, err := superconfig.Load(path)
	if err != nil {
		return nil, &configError{err}
	}
	out, err := superconfig.Compile(c)
	if err != nil {
		return nil, &configError{err}
	}
	// Credentials first, the drop-ins that load them next, then the
	// configs that name them, removals last: a failure half-way leaves
	// what the old configs need in place.
	files := make([]installFile, 0, len(out.Files)+len(out.Credentials))
	for _, cr := range out.Credentials {
		files = append(files, installFile{Path: superconfig.CredentialPath(cr.Name, out.Seal), Owner: "root", Mode: 0o600,
			Data: cr.Data, Service: cr.Unit, Credential: cr.Name, Seal: out.Seal})
	}
	for _, f := range out.Files {
		if f.DaemonReload {
			files = append(files, installFile{Path: f.Path, Owner: f.Owner, Mode: f.Mode, Data: f.Data, Service: f.Service, DaemonReload: true})
		}
	}
	for _, f := range out.Files {
		if !f.DaemonReload {
			files = append(files, installFile{Path: f.Path, Owner: f.Owner, Mode: f.Mode, Data: f.Data, Service: f.Service})
		}
	}
	// Inline keys once written in clear, drop-ins of units that no longer
	// load credentials: a secret must not outlive its setting.
	for _, path := range out.Obsolete {
		unit := "edgev2-keyd.service"
		if strings.HasPrefix(path, "/etc/systemd/system/") {
			unit = strings.TrimSuffix(filepath.Base(filepath.Dir(path)), ".d")
		}
		files = append(files, installFile{Path: path, Remove: true, Service: unit})
	}
	return files, nil
}

// validateSuperConfig is check's view of the super-config.
func validateSuperConfig(path string) error {
	c, err := superconfig.Load(path)
	if err != nil {
		return err
	}
	_, err = superconfig.Compile(c)
	return err
}
