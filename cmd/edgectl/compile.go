package main

import (
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
	files := make([]installFile, 0, len(out.Files))
	for _, f := range out.Files {
		files = append(files, installFile{Path: f.Path, Owner: f.Owner, Mode: f.Mode, Data: f.Data, Service: f.Service})
	}
	// Inline keys since removed from the super-config: a secret must not
	// outlive its setting (only keyd reads them).
	for _, path := range out.Obsolete {
		files = append(files, installFile{Path: path, Remove: true, Service: "edgev2-keyd.service"})
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
