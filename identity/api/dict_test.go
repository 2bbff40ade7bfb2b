package api

import (
	"reflect"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestDictRoundTripKeepsOptionalAndInlineKeys(t *testing.T) {
	info := ProvisioningInfo{Source: "dps", ProvisionedAt: 7, FromCache: true,
		Operational: &OperationalCert{CertID: "op", Renewals: 2}}
	d := ToDict(info)
	if d["operational_cert_id"].Value() != "op" || d["operational_renewals"].Value() != uint32(2) || d["provisioned_at"].Value() != uint64(7) {
		t.Fatalf("ToDict = %v", d)
	}
	var back ProvisioningInfo
	if err := FromDict(d, &back); err != nil || !reflect.DeepEqual(back, info) {
		t.Fatalf("FromDict = %+v, %v", back, err)
	}

	dev := ToDict(DeviceIdentity{DeviceID: "d"})
	if _, ok := dev["key_id"]; ok {
		t.Fatalf("empty omitempty key sent: %v", dev)
	}
	var none ProvisioningInfo
	if err := FromDict(map[string]godbus.Variant{"source": godbus.MakeVariant("none"), "future": godbus.MakeVariant(1)}, &none); err != nil || none.Operational != nil {
		t.Fatalf("without operational keys: %+v, %v", none, err)
	}
}

func TestFromDictRefusesAKeyOfAnotherType(t *testing.T) {
	var dev DeviceIdentity
	if err := FromDict(map[string]godbus.Variant{"device_id": godbus.MakeVariant(uint32(1))}, &dev); err == nil {
		t.Fatal("FromDict accepted device_id as u")
	}
}
