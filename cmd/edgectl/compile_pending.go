//go:build !superconfig_ready

package main

import "errors"

var errNoCompiler = errors.New("the super-config compiler (internal/superconfig) is not built into this edgectl yet")

func compileSuperConfig(path string) ([]installFile, error) { return nil, errNoCompiler }

func validateSuperConfig(path string) error { return errNoCompiler }
