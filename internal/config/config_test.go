package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadOfAMissingFileSaysConfigApplyWritesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyd.toml")
	_, err := Read(path)
	var ce *Error
	if !errors.As(err, &ce) || ce.File != path {
		t.Fatalf("Read(missing) = %v, want a config error naming the file", err)
	}
	for _, want := range []string{"edgectl config apply", "/etc/edgev2/config.toml", "--config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message %q does not say %q", err, want)
		}
	}
}
