package superconfig

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/edgev2/edgev2/internal/config"
)

// maxSize caps the super-config; a real one is a few kilobytes.
const maxSize = 1 << 20

// decode decodes TOML strictly, turning go-toml's errors into config.Error
// with the line of the offending key.
func decode(path string, data []byte, c *Config) error {
	if len(data) > maxSize {
		return &config.Error{File: path, Problem: fmt.Sprintf("the file is %d bytes, more than the %d allowed", len(data), maxSize), Fix: "check that this is the super-config"}
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	err := dec.Decode(c)
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		de := strict.Errors[0]
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		return &config.Error{File: path, Line: row, Key: key, Problem: "unknown setting",
			Fix: "remove it or check its spelling and the table it is in (see docs/config.md)"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		// de.Error() is go-toml's message without the highlighted source
		// text, so a mistyped secret is not echoed.
		return &config.Error{File: path, Line: row, Key: strings.Join(de.Key(), "."),
			Problem: fmt.Sprintf("column %d: %s", col, strings.TrimPrefix(de.Error(), "toml: ")),
			Fix:     "correct the TOML (strings in quotes, lists in [...], see docs/config.md for each setting's type)"}
	}
	return &config.Error{File: path, Problem: err.Error(), Fix: "correct the TOML"}
}
