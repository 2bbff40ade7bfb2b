package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"
)

func registryClient(t *testing.T, r *Registry) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(r.CAPEM) {
		t.Fatalf("registry CAPEM holds no certificate")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func getV2(t *testing.T, c *http.Client, url, user, password string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp
}

func TestRegistryServesOnlyAuthenticatedCallersOverTLS(t *testing.T) {
	r := StartRegistry(t, "edge", "s3cret-pw")
	c := registryClient(t, r)
	base := "https://" + r.Addr + "/v2/"
	if resp := getV2(t, c, base, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous GET /v2/: %s, want 401", resp.Status)
	}
	if resp := getV2(t, c, base, r.User, "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/ with a wrong password: %s, want 401", resp.Status)
	}
	if resp := getV2(t, c, base, r.User, r.Password); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ with the credentials: %s, want 200", resp.Status)
	}
	// Without the CA the certificate must not verify.
	if resp, err := http.Get(base); err == nil {
		resp.Body.Close()
		t.Errorf("GET with system roots succeeded (%s); want a certificate error", resp.Status)
	}
}

func TestRegistryPushMakesImageFetchable(t *testing.T) {
	c := StartContainerd(t)
	r := StartRegistry(t, "edge", "s3cret-pw")
	const ns, ref = "registry-test", "example.com/edgev2/busybox:pushed"
	ImportImage(t, c, ns, BuildImage(t, ref, ImageConfig{Cmd: []string{"true"}}))
	remote := r.Push(t, c, ns, ref)
	if want := r.Addr + "/edgev2/busybox:pushed"; remote != want {
		t.Fatalf("Push returned %q, want %q", remote, want)
	}
	hc := registryClient(t, r)
	url := "https://" + r.Addr + "/v2/edgev2/busybox/manifests/pushed"
	resp := getV2(t, hc, url, r.User, r.Password)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Docker-Content-Digest"), "sha256:") {
		t.Fatalf("GET pushed manifest: %s, digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
	if resp := getV2(t, hc, url, "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous GET of the pushed manifest: %s, want 401", resp.Status)
	}
}
