package pkcs11uri

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/edgev2/edgev2/fault"
)

func TestParsePKCS11URIAcceptsRFC7512Forms(t *testing.T) {
	tests := []struct {
		in   string
		want URI
		pin  string
	}{
		{in: "pkcs11:", want: URI{}},
		{in: "PKCS11:token=edge", want: URI{Token: "edge"}},
		{in: "pkcs11:token=edge;object=device-id?pin-value=1234",
			want: URI{Token: "edge", Object: "device-id"}, pin: "1234"},
		{in: "pkcs11:token=My%20Token;serial=9eced9c81575bf0d;manufacturer=SoftHSM%20project;model=SoftHSM%20v2",
			want: URI{Token: "My Token", Serial: "9eced9c81575bf0d", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}},
		{in: "pkcs11:slot-id=360038157;slot-description=SoftHSM%20slot;slot-manufacturer=SoftHSM",
			want: URI{SlotID: 360038157, HasSlotID: true, SlotDescription: "SoftHSM slot", SlotManufacturer: "SoftHSM"}},
		{in: "pkcs11:slot-id=0", want: URI{HasSlotID: true}},
		{in: "pkcs11:library-manufacturer=OpenSC%20Project;library-description=OpenSC%20smartcard%20framework;library-version=0.23",
			want: URI{LibraryManufacturer: "OpenSC Project", LibraryDescription: "OpenSC smartcard framework", LibraryVersion: "0.23"}},
		{in: "pkcs11:library-version=2", want: URI{LibraryVersion: "2"}},
		{in: "pkcs11:id=%01%02%a0%FF;type=private", want: URI{ID: []byte{1, 2, 0xa0, 0xff}, Type: "private"}},
		{in: "pkcs11:type=secret-key", want: URI{Type: "secret-key"}},
		{in: "pkcs11:type=cert", want: URI{Type: "cert"}},
		{in: "pkcs11:object=a%3Bb%3Fc%26d=e", want: URI{Object: "a;b?c&d=e"}},
		{in: "pkcs11:token=edge?pin-source=file:///etc/edgev2/pin&module-path=/usr/lib/softhsm/libsofthsm2.so&module-name=softhsm2",
			want: URI{Token: "edge", PINSource: "file:///etc/edgev2/pin", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", ModuleName: "softhsm2"}},
		{in: "pkcs11:token=edge;x-vendor=whatever?x-other=1", want: URI{Token: "edge"}},
		{in: "pkcs11:token=edge;", want: URI{Token: "edge"}},
		{in: "pkcs11:token=a?pin-value=p;q=r&module-name=m", want: URI{Token: "a", ModuleName: "m"}, pin: "p;q=r"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if pin, err := got.PIN(); tt.want.PINSource == "" && (err != nil || pin != tt.pin) {
				t.Fatalf("PIN() = %q, %v; want %q", pin, err, tt.pin)
			}
			want := tt.want
			want.pinValue = tt.pin
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("got %#v\nwant %#v", *got, want)
			}
		})
	}
}

func TestParsePKCS11URIRejectsBadInputNamingTheAttribute(t *testing.T) {
	tests := []struct {
		in, wantMsg string
	}{
		{"token=edge", "must start with"},
		{"pkcs1:token=edge", "must start with"},
		{"https://example.com", "must start with"},
		{"pkcs11:token=a;token=b", `repeats attribute "token"`},
		{"pkcs11:token=a?pin-value=1&pin-value=2", `repeats attribute "pin-value"`},
		{"pkcs11:tokn=edge", `unknown path attribute "tokn"`},
		{"pkcs11:token=edge?pin-valu=1", `unknown query attribute "pin-valu"`},
		{"pkcs11:pin-value=1234", `"pin-value" belongs in the query`},
		{"pkcs11:slot-id=0x10", `slot-id "0x10" is not a decimal integer`},
		{"pkcs11:slot-id=-1", `slot-id "-1"`},
		{"pkcs11:slot-id=+1", `slot-id "+1"`},
		{"pkcs11:slot-id=", `slot-id ""`},
		{"pkcs11:slot-id=99999999999999999999999", "not a decimal integer"},
		{"pkcs11:type=key", `type "key" is not one of`},
		{"pkcs11:library-version=2.x", `library-version "2.x"`},
		{"pkcs11:token=%zz", `attribute "token" has a bad percent-encoding`},
		{"pkcs11:token=%4", `attribute "token" has a bad percent-encoding`},
		{"pkcs11:token", "without the \"name=value\" form"},
		{"pkcs11:token=a\nb", "control character"},
		{"pkcs11:token=a?pin-value=1&pin-source=/etc/pin", "both pin-value and pin-source"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if !fault.Is(err, fault.InvalidArgs) {
				t.Errorf("kind = %v, want InvalidArgs", fault.KindOf(err))
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestParsePKCS11URIErrorsNeverShowThePIN(t *testing.T) {
	const pin = "s3cretPIN9"
	for _, in := range []string{
		"pkcs11:token=a;bogus=1?pin-value=" + pin,
		"pkcs11:token=a?pin-value=" + pin + "&pin-value=" + pin,
		"pkcs11:token=a?pin-value=%zz" + pin,
		"pkcs11:token=a?" + pin,
		"pkcs11:" + pin,
		"pkcs11:token=a?pin-value=" + pin + "&pin-source=/x",
		"pkcs11:token=a;pin-value=" + pin,
		"PKCS11-" + pin,
	} {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("%q: accepted", in)
			continue
		}
		if strings.Contains(err.Error(), pin) {
			t.Errorf("%q: error %q shows the PIN", in, err)
		}
	}
}

func TestPKCS11URIStringOmitsPINAndReparses(t *testing.T) {
	u, err := Parse("pkcs11:token=edge%20gw;object=dev;id=%00%ff;slot-id=7?pin-value=1234&module-path=/usr/lib/x.so")
	if err != nil {
		t.Fatal(err)
	}
	s := u.String()
	if strings.Contains(s, "1234") || strings.Contains(s, "pin-value") {
		t.Fatalf("String() = %q shows the PIN", s)
	}
	const want = "pkcs11:token=edge%20gw;slot-id=7;object=dev;id=%00%FF?module-path=/usr/lib/x.so"
	if s != want {
		t.Fatalf("String() = %q, want %q", s, want)
	}
	for _, out := range []string{fmt.Sprint(u), fmt.Sprintf("%v %+v %#v %s", u, u, u, u)} {
		if strings.Contains(out, "1234") {
			t.Errorf("formatting shows the PIN: %s", out)
		}
	}
}

func TestPKCS11URIPINReadsPinSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pin")
	if err := os.WriteFile(file, []byte("9876\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{file, "file://" + file, "file://localhost" + file} {
		u, err := Parse("pkcs11:token=a?pin-source=" + src)
		if err != nil {
			t.Fatal(err)
		}
		pin, err := u.PIN()
		if err != nil || pin != "9876" {
			t.Errorf("pin-source=%s: PIN() = %q, %v; want 9876", src, pin, err)
		}
	}
	u, _ := Parse("pkcs11:token=a?pin-source=" + filepath.Join(dir, "missing"))
	if _, err := u.PIN(); !fault.Is(err, fault.NotFound) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing pin-source: err = %v, want NotFound naming the file", err)
	}
	u, _ = Parse("pkcs11:token=a?pin-source=relative/pin")
	if _, err := u.PIN(); !fault.Is(err, fault.InvalidArgs) {
		t.Errorf("relative pin-source: err = %v, want InvalidArgs", err)
	}
	u, _ = Parse("pkcs11:token=a?pin-source=file://otherhost/pin")
	if _, err := u.PIN(); !fault.Is(err, fault.InvalidArgs) {
		t.Errorf("remote file: URI: err = %v, want InvalidArgs", err)
	}
	u, _ = Parse("pkcs11:token=a")
	if pin, err := u.PIN(); pin != "" || err != nil || u.HasPIN() {
		t.Errorf("no PIN: PIN() = %q, %v, HasPIN %v", pin, err, u.HasPIN())
	}
}

func FuzzParsePKCS11URI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:",
		"pkcs11:token=edge;object=device-id?pin-value=1234",
		"pkcs11:token=My%20Token;serial=9e;manufacturer=m;model=x;slot-id=3;slot-description=d;slot-manufacturer=s",
		"pkcs11:library-manufacturer=a;library-description=b;library-version=1.2;id=%01%02;type=private",
		"pkcs11:object=a%3Bb?pin-source=file:///etc/pin&module-path=/usr/lib/x.so&module-name=m",
		"pkcs11:token=a;x-v=1?x-q=2",
		"PKCS11:token=%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			return
		}
		out := u.String()
		if pin := u.pinValue; pin != "" && strings.Contains(out, "pin-value") {
			t.Fatalf("String() %q renders pin-value", out)
		}
		v, err := Parse(out)
		if err != nil {
			t.Fatalf("String() %q of a parsed URI does not re-parse: %v", out, err)
		}
		want := *u
		want.pinValue = ""
		if !reflect.DeepEqual(*v, want) || !bytes.Equal(v.ID, want.ID) {
			t.Fatalf("round trip of %q via %q:\n got %#v\nwant %#v", s, out, *v, want)
		}
		if v.String() != out {
			t.Fatalf("String() is not stable: %q then %q", out, v.String())
		}
	})
}
