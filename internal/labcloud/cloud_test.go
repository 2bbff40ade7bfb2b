package labcloud_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgev2/edgev2/identity/dps"
	idhub "github.com/edgev2/edgev2/identity/hub"
	"github.com/edgev2/edgev2/identity/sas"
	"github.com/edgev2/edgev2/internal/labcloud"
	labdps "github.com/edgev2/edgev2/internal/labcloud/dps"
)

const enrollKey = "ZGV2aWNlLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ="

func signer(key string) sas.Signer {
	k, _ := base64.StdEncoding.DecodeString(key)
	return func(_ context.Context, data []byte) ([]byte, error) {
		m := hmac.New(sha256.New, k)
		m.Write(data)
		return m.Sum(nil), nil
	}
}

// Two clouds at once, each like a real Azure endpoint: DPS assigns a bare
// hub name (no ':'), the device's own hub client reaches it on 443 by that
// name with the TLS name verified (no InsecureSkipVerify), and neither
// cloud's certificate passes for the other's name.
func TestTwoCloudsAssignBareHubNamesVerifiedByTLS(t *testing.T) {
	cfg := labcloud.Config{DPS: labdps.Config{AssigningPolls: 1, RetryAfter: 1, Enrollments: []labdps.Enrollment{
		{RegistrationID: "dev-1", Attestation: "symmetric_key", PrimaryKey: enrollKey}}}}
	var clouds [2]*labcloud.Cloud
	var wg sync.WaitGroup
	for i := range clouds {
		wg.Add(1)
		go func() { defer wg.Done(); clouds[i] = labcloud.StartTestCloud(t, cfg) }()
	}
	wg.Wait()
	if clouds[0].Hostname == clouds[1].Hostname || clouds[0].Addr == clouds[1].Addr {
		t.Fatalf("two clouds share %s / %s", clouds[0].Addr, clouds[0].Hostname)
	}
	ctx := context.Background()
	for _, c := range clouds {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.CAPEM)
		if c.URL != "https://"+c.Hostname || strings.Contains(c.Hostname, ":") || !strings.HasSuffix(c.Addr, ":443") {
			t.Fatalf("cloud URL %q host %q addr %q: want https://NAME, a bare name, port 443", c.URL, c.Hostname, c.Addr)
		}
		res, err := dps.Register(ctx, dps.Config{Endpoint: c.URL, IDScope: c.IDScope, RegistrationID: "dev-1",
			SAS: signer(enrollKey), TrustAnchors: pool, Sleep: func(context.Context, time.Duration) error { return nil }})
		if err != nil {
			t.Fatalf("DPS register at %s: %v", c.URL, err)
		}
		if res.AssignedHub != c.Hostname || strings.ContainsAny(res.AssignedHub, ":/") {
			t.Fatalf("assignedHub %q, want the bare name %q", res.AssignedHub, c.Hostname)
		}
		// The device's key in the hub is the one DPS registered (the enrollment key).
		hc, err := idhub.New(idhub.Config{HubHost: res.AssignedHub, DeviceID: res.DeviceID, SAS: signer(enrollKey), TrustAnchors: pool})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hc.CreateModule(ctx, "m1", idhub.Authentication{Type: idhub.AuthSAS}, ""); err != nil {
			t.Fatalf("create a module at hub %s: %v", res.AssignedHub, err)
		}
		hc.Close()
	}
	// TLS names are checked for real: cloud 1's listener does not pass for cloud 0's name.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clouds[0].CAPEM)
	pool.AppendCertsFromPEM(clouds[1].CAPEM)
	conn, err := tls.Dial("tcp", clouds[1].Addr, &tls.Config{RootCAs: pool, ServerName: clouds[0].Hostname})
	var verr *tls.CertificateVerificationError
	if err == nil {
		conn.Close()
		t.Fatalf("cloud 1 at %s passed TLS verification as %s", clouds[1].Addr, clouds[0].Hostname)
	} else if !errors.As(err, &verr) {
		t.Fatalf("dial cloud 1 as cloud 0's name: %v, want a certificate verification error", err)
	}
}
