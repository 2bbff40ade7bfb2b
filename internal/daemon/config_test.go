package daemon

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/internal/testenv"
)

type fakeConfig struct{ credErr error }

func (c *fakeConfig) ReadCredentials() error { return c.credErr }

func TestLoadConfigExitsConfigOnABadFileOrAMissingCredential(t *testing.T) {
	for _, tc := range []struct {
		name     string
		loadErr  error
		credErr  error
		wantOK   bool
		wantExit int
		wantLog  string
	}{
		{name: "good", wantOK: true},
		{name: "bad file", loadErr: errors.New("line 3: unknown key"), wantExit: ExitConfig, wantLog: "bad configuration"},
		{name: "missing credential", credErr: errors.New("keyd-pin: no such file"), wantExit: ExitConfig, wantLog: "a credential the configuration names is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out testenv.Buffer
			log := slog.New(slog.NewTextHandler(&out, nil))
			_, exit, ok := loadConfig(log, "/etc/edgev2/x.toml", func(string) (*fakeConfig, error) {
				if tc.loadErr != nil {
					return nil, tc.loadErr
				}
				return &fakeConfig{credErr: tc.credErr}, nil
			})
			if ok != tc.wantOK || exit != tc.wantExit {
				t.Fatalf("ok, exit = %v, %d; want %v, %d", ok, exit, tc.wantOK, tc.wantExit)
			}
			if !strings.Contains(out.String(), tc.wantLog) {
				t.Errorf("log %q does not say %q", out.String(), tc.wantLog)
			}
		})
	}
}
