package connstr

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + secretB64,
		"HostName=h;DeviceId=d;ModuleId=m;GatewayHostName=g;SharedAccessKey=" + secretB64,
		"HostName=h;DeviceId=d;x509=true", ";;;", "=", "HostName==;DeviceId==;SharedAccessKey===",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), secretB64) {
				t.Fatalf("error echoes key: %v", err)
			}
			return
		}
		if cs.HostName == "" || cs.DeviceID == "" || (len(cs.SharedAccessKey) == 0) != cs.X509 {
			t.Fatalf("accepted %q as %s", s, cs)
		}
		if strings.Contains(cs.String(), "SharedAccessKey=") && !strings.Contains(cs.String(), "SharedAccessKey=<redacted>") {
			t.Fatalf("String leaks: %s", cs)
		}
	})
}
