// Package config reads the daemons' TOML files strictly and reports mistakes
// by file, key and fix, so a bad file stops a daemon with a useful message.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Error is a configuration mistake. Line, when known (> 0), is the 1-based
// line of the offending key in File.
type Error struct {
	File, Key, Problem, Fix string
	Line                    int
}

func (e *Error) Error() string {
	s := e.File + ": "
	if e.Line > 0 {
		s = fmt.Sprintf("%s:%d: ", e.File, e.Line)
	}
	if e.Key != "" {
		s += e.Key + ": "
	}
	s += e.Problem
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

// Read reads a config file. A missing one is usually a device whose
// super-config was never applied: the fix says so.
func Read(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problem: err.Error(), Fix: MissingFix}
	}
	return data, nil
}

// MissingFix is the fix for a daemon's config file that cannot be read.
const MissingFix = "`edgectl config apply` writes it from the super-config /etc/edgev2/config.toml (docs/config.md); or pass --config FILE"

// Decode decodes TOML into v, refusing unknown settings; docs names where
// the settings are described.
func Decode(path string, data []byte, v any, docs string) error {
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		return &Error{File: path, Key: strings.Join(strict.Errors[0].Key(), "."), Problem: "unknown setting", Fix: "remove it or check its spelling (see " + docs + ")"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return &Error{File: path, Key: strings.Join(de.Key(), "."), Problem: fmt.Sprintf("line %d, column %d: %s", row, col, de.Error()), Fix: "correct the TOML"}
	}
	return &Error{File: path, Problem: err.Error(), Fix: "correct the TOML"}
}

// Load reads the config file at path and hands its text to parse, the
// service's own parser: the Load every daemon's config package has.
func Load[C any](path string, parse func(path string, data []byte) (*C, error)) (*C, error) {
	data, err := Read(path)
	if err != nil {
		return nil, err
	}
	return parse(path, data)
}

// Parse decodes data strictly (Decode) into a new C and checks it with
// validate, which may fill in defaults. The config is returned with
// validate's error too, so a caller can still look at what was parsed.
func Parse[C any](path string, data []byte, docs string, validate func(c *C, path string) error) (*C, error) {
	var c C
	if err := Decode(path, data, &c, docs); err != nil {
		return nil, err
	}
	return &c, validate(&c, path)
}
