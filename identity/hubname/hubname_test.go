package hubname

import (
	"strings"
	"testing"
)

func TestCheckAcceptsBareNamesOnly(t *testing.T) {
	for h, want := range map[string]string{
		"myhub.azure-devices.net":       "",
		"hub-12-34.labcloud.test":       "",
		"localhost":                     "",
		"MyHub.Azure-Devices.NET":       "",
		"127.0.0.1":                     "", // dotted quad: a name as far as TLS and SAS go
		"127.0.0.1:8443":                "carries a port",
		"myhub.azure-devices.net:443":   "carries a port",
		"[::1]":                         "carries a port",
		"":                              "empty",
		"hub/evil":                      "not a DNS host name",
		"hub.example?x=1":               "not a DNS host name",
		"-hub.example":                  "not a DNS host name",
		"hub..example":                  "not a DNS host name",
		"hub example":                   "not a DNS host name",
		"hub\nexample":                  `"hub?example" is not a DNS host name`, // quoted without its control character
		strings.Repeat("a.", 127) + "a": `a...." is not a DNS host name`,        // quoted shortened to 64 bytes
	} {
		err := Check("IoT Hub host", h)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%q) = %v, want %q", h, err, want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"myhub.azure-devices.net", "h:1", "[::1]:443", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if Check("h", h) == nil && strings.ContainsAny(h, ":/?#@[] \n") {
			t.Fatalf("accepted %q", h)
		}
	})
}
