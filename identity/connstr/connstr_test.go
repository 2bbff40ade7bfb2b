package connstr

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

// A key that must never show up in an error or in String().
const secretB64 = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="

var secret = []byte("4\xc8\t\x0e\xf7JO\x18\xcb\x8b\xecA\xc7\x19\x03\x0cL\x03'\x11/8Nn\xf0\x18\x93\xd2e`=\xe8")

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want ConnectionString
	}{{
		name: "device",
		in:   "HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + secretB64,
		want: ConnectionString{HostName: "myhub.azure-devices.net", DeviceID: "dev1", SharedAccessKey: secret},
	}, {
		name: "module through a gateway, keys in another order, trailing semicolon",
		in:   "DeviceId=edge-1;ModuleId=$edgeAgent;SharedAccessKey=" + secretB64 + ";GatewayHostName=parent.local;HostName=h.example;",
		want: ConnectionString{HostName: "h.example", DeviceID: "edge-1", ModuleID: "$edgeAgent", GatewayHostName: "parent.local", SharedAccessKey: secret},
	}, {
		name: "x509",
		in:   "HostName=h.example;DeviceId=d;x509=true",
		want: ConnectionString{HostName: "h.example", DeviceID: "d", X509: true},
	}, {
		name: "x509 in upper case",
		in:   "HostName=h.example;DeviceId=d;x509=TRUE",
		want: ConnectionString{HostName: "h.example", DeviceID: "d", X509: true},
	}, {
		name: "policy key",
		in:   "HostName=h.example;DeviceId=d;SharedAccessKeyName=iothubowner;SharedAccessKey=" + secretB64,
		want: ConnectionString{HostName: "h.example", DeviceID: "d", SharedAccessKeyName: "iothubowner", SharedAccessKey: secret},
	}, {
		name: "surrounding whitespace",
		in:   "  HostName=hub-1-2.labcloud.test;DeviceId=d;SharedAccessKey=" + secretB64 + "\n",
		want: ConnectionString{HostName: "hub-1-2.labcloud.test", DeviceID: "d", SharedAccessKey: secret},
	}, {
		name: "device id with IoT Hub's allowed punctuation",
		in:   "HostName=h.example;DeviceId=a-:.+%_#*?!(),=@$';SharedAccessKey=" + secretB64,
		want: ConnectionString{HostName: "h.example", DeviceID: "a-:.+%_#*?!(),=@$'", SharedAccessKey: secret},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.HostName != tt.want.HostName || got.DeviceID != tt.want.DeviceID || got.ModuleID != tt.want.ModuleID ||
				got.GatewayHostName != tt.want.GatewayHostName || got.SharedAccessKeyName != tt.want.SharedAccessKeyName ||
				got.X509 != tt.want.X509 || !bytes.Equal(got.SharedAccessKey, tt.want.SharedAccessKey) {
				t.Fatalf("got %s, want %s", got, &tt.want)
			}
		})
	}
}

func TestParseRejectsNamingTheKey(t *testing.T) {
	tests := []struct {
		name, in, mention string
	}{
		{"empty", "", "empty"},
		{"missing HostName", "DeviceId=d;SharedAccessKey=" + secretB64, "HostName"},
		{"missing DeviceId", "HostName=h;SharedAccessKey=" + secretB64, "DeviceId"},
		{"missing key", "HostName=h;DeviceId=d", "SharedAccessKey"},
		{"duplicate key", "HostName=h;DeviceId=d;SharedAccessKey=" + secretB64 + ";SharedAccessKey=" + secretB64, "repeats key SharedAccessKey"},
		{"duplicate HostName", "HostName=h;HostName=g;DeviceId=d;SharedAccessKey=" + secretB64, "repeats key HostName"},
		{"unknown key", "HostName=h;DeviceId=d;Foo=bar;SharedAccessKey=" + secretB64, `"Foo"`},
		{"wrong case key", "hostname=h;DeviceId=d;SharedAccessKey=" + secretB64, `"hostname"`},
		{"empty value", "HostName=;DeviceId=d;SharedAccessKey=" + secretB64, "HostName has an empty value"},
		{"empty key value", "HostName=h;DeviceId=d;SharedAccessKey=", "SharedAccessKey has an empty value"},
		{"bad base64", "HostName=h;DeviceId=d;SharedAccessKey=" + secretB64[:len(secretB64)-3] + "!!", "SharedAccessKey is not valid base64"},
		{"segment without =", "HostName=h;DeviceId=d;" + secretB64[:10], "segment 3"},
		{"x509 and key", "HostName=h;DeviceId=d;x509=true;SharedAccessKey=" + secretB64, "x509=true and SharedAccessKey"},
		{"x509 not boolean", "HostName=h;DeviceId=d;x509=yes", "x509 must be true or false"},
		{"host with path", "HostName=h/evil;DeviceId=d;SharedAccessKey=" + secretB64, "HostName"},
		// A hub name never carries a port: the Azure SDKs would put it whole in the TLS host.
		{"host with port", "HostName=127.0.0.1:8443;DeviceId=d;SharedAccessKey=" + secretB64, "HostName \"127.0.0.1:8443\" carries a port"},
		{"gateway with port", "HostName=h;GatewayHostName=parent:443;DeviceId=d;SharedAccessKey=" + secretB64, "GatewayHostName \"parent:443\" carries a port"},
		{"host IPv6 literal", "HostName=[::1];DeviceId=d;SharedAccessKey=" + secretB64, "HostName"},
		{"host with userinfo", "HostName=u@h;DeviceId=d;SharedAccessKey=" + secretB64, "HostName"},
		{"gateway with space", "HostName=h;GatewayHostName=a b;DeviceId=d;SharedAccessKey=" + secretB64, "GatewayHostName"},
		{"control char in device id", "HostName=h;DeviceId=d\x00;SharedAccessKey=" + secretB64, "DeviceId"},
		{"key name without key", "HostName=h;DeviceId=d;x509=true;SharedAccessKeyName=p", "SharedAccessKeyName"},
		// A ',' typed for a ';': the key runs into the value before it, which the message must not show.
		{"key run into HostName", "HostName=h.example,SharedAccessKey=" + secretB64 + ";DeviceId=d;SharedAccessKey=" + secretB64, "HostName is not a DNS host name"},
		{"key run into GatewayHostName", "HostName=h;GatewayHostName=gw,SharedAccessKey=" + secretB64 + ";DeviceId=d;SharedAccessKey=" + secretB64, "GatewayHostName is not a DNS host name"},
		{"key run into x509", "HostName=h;DeviceId=d;x509=false,SharedAccessKey=" + secretB64, "x509 must be true or false"},
		{"too long", "HostName=h;DeviceId=" + strings.Repeat("d", maxLen) + ";SharedAccessKey=" + secretB64, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if !fault.Is(err, fault.InvalidArgs) {
				t.Fatalf("err %v, want InvalidArgs", err)
			}
			msg := fault.Message(err)
			if !strings.Contains(msg, tt.mention) {
				t.Fatalf("message %q does not mention %q", msg, tt.mention)
			}
			if strings.Contains(msg, secretB64[:10]) {
				t.Fatalf("message echoes the key: %q", msg)
			}
		})
	}
}

func TestStringRedactsKey(t *testing.T) {
	cs, err := Parse("HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessKey=" + secretB64)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{cs.String(), fmt.Sprint(cs), fmt.Sprintf("%v", cs), fmt.Sprintf("%#v", cs), fmt.Sprintf("%+v", cs)} {
		if strings.Contains(s, secretB64[:10]) || strings.Contains(s, string(secret[:8])) {
			t.Fatalf("rendering leaks the key: %s", s)
		}
	}
	if got, want := cs.String(), "HostName=h.example;DeviceId=d;ModuleId=m;SharedAccessKey=<redacted>"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestStringOfX509(t *testing.T) {
	cs, err := Parse("HostName=h;DeviceId=d;GatewayHostName=g;x509=true")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cs.String(), "HostName=h;DeviceId=d;GatewayHostName=g;x509=true"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
