package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfigNamesTheKeyToFix(t *testing.T) {
	tests := []struct {
		name, text, wantKey string
	}{
		{"missing homedir", ``, "homedir"},
		{"relative homedir", `homedir = "keys"`, "homedir"},
		{"unknown setting", "homedir = \"/k\"\npkcs11_libpath = \"x\"", "pkcs11_libpath"},
		{"slot without lib", "homedir = \"/k\"\npkcs11_base_slot = \"pkcs11:token=a\"", "pkcs11_lib_path"},
		{"bad slot uri", "homedir = \"/k\"\npkcs11_lib_path = \"/l.so\"\npkcs11_base_slot = \"http://x\"", "pkcs11_base_slot"},
		{"bad preloaded scheme", "homedir = \"/k\"\n[preloaded_keys]\ndev = \"http://x\"", "preloaded_keys.dev"},
		{"relative file uri", "homedir = \"/k\"\n[preloaded_keys]\ndev = \"file://key.pem\"", "preloaded_keys.dev"},
		{"pkcs11 key without lib", "homedir = \"/k\"\n[preloaded_keys]\ndev = \"pkcs11:object=x\"", "preloaded_keys.dev"},
		{"pool out of range", "homedir = \"/k\"\npkcs11_sessions = 1000", "pkcs11_sessions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/etc/edgev2/keyd.toml", []byte(tt.text))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConfigError", err)
			}
			if ce.Key != tt.wantKey || !strings.Contains(err.Error(), "/etc/edgev2/keyd.toml") || ce.Fix == "" {
				t.Fatalf("error %q names key %q, want %q with file and fix", err, ce.Key, tt.wantKey)
			}
		})
	}
}

func TestParseConfigAcceptsEveryDocumentedSetting(t *testing.T) {
	text := `homedir = "/var/lib/edgev2/keyd"
pkcs11_lib_path = "/usr/lib/softhsm/libsofthsm2.so"
pkcs11_base_slot = "pkcs11:token=edgev2?pin-value=1234"
pkcs11_sessions = 4

[preloaded_keys]
device-id = "file:///etc/edgev2/device-id.pem"
hsm = "pkcs11:token=edgev2;object=device"
`
	c, err := Parse("keyd.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.PKCS11Sessions != 4 || len(c.PreloadedKeys) != 2 || FilePath(c.PreloadedKeys["device-id"]) != "/etc/edgev2/device-id.pem" {
		t.Fatalf("parsed %+v", c)
	}
}

func TestConfigErrorsNeverShowThePIN(t *testing.T) {
	text := "homedir = \"/k\"\npkcs11_lib_path = \"/l.so\"\npkcs11_base_slot = \"pkcs11:token=a;bogus=1?pin-value=s3cretpin\""
	_, err := Parse("keyd.toml", []byte(text))
	if err == nil || strings.Contains(err.Error(), "s3cretpin") {
		t.Fatalf("error %v must exist and not contain the PIN", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("homedir = \"/k\"\n[preloaded_keys]\na = \"file:///x\""))
	f.Add([]byte("homedir = 1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err == nil && (c.Homedir == "" || c.Homedir[0] != '/') {
			t.Fatalf("accepted config without absolute homedir: %+v", c)
		}
	})
}
