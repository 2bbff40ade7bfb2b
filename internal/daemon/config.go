package daemon

import (
	"log/slog"
	"os"
)

// Credentialed is a service configuration whose named credentials (files,
// systemd credentials) are read once at start.
type Credentialed interface{ ReadCredentials() error }

// LoadConfig is the start every configured service shares: with no file at
// configPath yet it serves NotConfigured under busName until stopped;
// otherwise it loads the file with load and reads the credentials it names.
// ok is false when the daemon is done, and exit is then its exit code
// (ExitConfig for a bad file or a missing credential).
func LoadConfig[C Credentialed](log *slog.Logger, name, busName, configPath string, load func(string) (C, error)) (cfg C, exit int, ok bool) {
	if ConfigMissing(configPath) {
		// Before `edgectl config apply`: own the name and say so to every
		// caller rather than exit (D-Bus activation would wait 25 s).
		return cfg, ServeNotConfigured(log, name, busName, configPath), false
	}
	return loadConfig(log, configPath, load)
}

func loadConfig[C Credentialed](log *slog.Logger, configPath string, load func(string) (C, error)) (cfg C, exit int, ok bool) {
	cfg, err := load(configPath)
	if err != nil {
		log.Error("bad configuration; not starting", "err", err)
		return cfg, ExitConfig, false
	}
	if err := cfg.ReadCredentials(); err != nil {
		log.Error("a credential the configuration names is missing; not starting", "config", configPath, "err", err)
		return cfg, ExitConfig, false
	}
	return cfg, 0, true
}

// Main is the main function of a configured service: it parses the flags
// (--config, defaulting to defaultConfig, and --log-level), loads the
// configuration as LoadConfig does, and exits with what run returns once the
// configuration is good and its credentials are read.
func Main[C Credentialed](name, defaultConfig, busName string, load func(string) (C, error), run func(cfg C, configPath string, log *slog.Logger) int) {
	configPath, log := Flags(name, defaultConfig)
	cfg, exit, ok := LoadConfig(log, name, busName, configPath, load)
	if ok {
		exit = run(cfg, configPath, log)
	}
	os.Exit(exit)
}
