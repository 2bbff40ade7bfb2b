package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	certsconfig "github.com/edgev2/edgev2/certs/config"
	idconfig "github.com/edgev2/edgev2/identity/config"
	"github.com/edgev2/edgev2/internal/config"
	keysconfig "github.com/edgev2/edgev2/keys/config"
	rtconfig "github.com/edgev2/edgev2/modrt/config"
)

// deviceConfigs are the per-service configs that loaded (nil: missing or
// invalid, already reported).
type deviceConfigs struct {
	keyd      *keysconfig.Config
	certd     *certsconfig.Config
	identityd *idconfig.Config
	modrtd    *rtconfig.Config
}

// configProblem turns a config error into a message and a fix that name
// file, line and key.
func configProblem(err error) (msg, fix string) {
	var ce *config.Error
	if errors.As(err, &ce) {
		where := ce.File
		if ce.Line > 0 {
			where = fmt.Sprintf("%s line %d", ce.File, ce.Line)
		}
		if ce.Key != "" {
			where += ", key " + ce.Key
		}
		fix = ce.Fix
		if fix == "" {
			fix = "correct the file"
		}
		return where + ": " + ce.Problem, fix
	}
	return err.Error(), "correct the file"
}

func (k *checker) checkConfigs() {
	switch _, err := os.Stat(k.o.superConfig); {
	case errors.Is(err, fs.ErrNotExist):
		k.add("config.super", statusSkipped, fmt.Sprintf("no super-config at %s; the per-service configs are checked as they are", k.o.superConfig), "")
	case err != nil:
		k.add("config.super", statusError, err.Error(), "make the file readable by root")
	default:
		if err := validateSuperConfig(k.o.superConfig); err != nil {
			msg, fix := configProblem(err)
			k.add("config.super", statusError, msg, fix)
		} else {
			k.ok("config.super", "%s is valid", k.o.superConfig)
		}
	}
	load := func(name string, fn func(path string) error) {
		path := filepath.Join(k.o.configDir, name+".toml")
		check := "config." + name
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			k.add(check, statusError, path+" does not exist", "run `edgectl config apply` to write it from the super-config")
			return
		}
		if f, err := os.Open(path); errors.Is(err, fs.ErrPermission) {
			k.add(check, statusWarning, path+" is not readable by this user", "run edgectl check as root")
			return
		} else if err == nil {
			f.Close()
		}
		if err := fn(path); err != nil {
			msg, fix := configProblem(err)
			k.add(check, statusError, msg, fix)
			return
		}
		k.ok(check, "%s is valid", path)
	}
	load("keyd", func(p string) (err error) { k.cfg.keyd, err = keysconfig.Load(p); return err })
	load("certd", func(p string) (err error) { k.cfg.certd, err = certsconfig.Load(p); return err })
	load("identityd", func(p string) (err error) { k.cfg.identityd, err = idconfig.LoadConfig(p); return err })
	load("modrtd", func(p string) (err error) { k.cfg.modrtd, err = rtconfig.LoadConfig(p); return err })
}
