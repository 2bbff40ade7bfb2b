package daemon

import "log/slog"

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
