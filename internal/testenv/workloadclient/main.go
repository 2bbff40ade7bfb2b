// Command workloadclient runs inside a test module's container and does what
// an Azure IoT module SDK does with the workload API: sign a SAS token for
// itself over /var/run/iotedge/workload.sock, fetch the trust bundle, send a
// device-to-cloud message to the hub with the token; and it tries to sign as
// another module, which must be refused. It prints one JSON line of results.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	if os.Getenv("MGMT_PROBE_CHILD") != "" {
		fmt.Println(mgmtCall()) // mgmt.go
		return
	}
	res := map[string]any{}
	defer func() {
		b, _ := json.Marshal(res)
		fmt.Println("WORKLOAD-RESULT " + string(b))
	}()
	sock := strings.TrimPrefix(os.Getenv("IOTEDGE_WORKLOADURI"), "unix://")
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	api := os.Getenv("IOTEDGE_APIVERSION")
	hub, dev, mod, gen := os.Getenv("IOTEDGE_IOTHUBHOSTNAME"), os.Getenv("IOTEDGE_DEVICEID"), os.Getenv("IOTEDGE_MODULEID"), os.Getenv("IOTEDGE_MODULEGENERATIONID")
	res["module"] = mod
	if os.Getenv("MGMT_PROBE") != "" {
		mgmtProbe(res) // mgmt.go
		return
	}
	if role := os.Getenv("FLOOD_ROLE"); role != "" {
		// flood.go; its lines only, no WORKLOAD-RESULT line.
		floodRole(role, sock, api, mod, gen)
		os.Exit(0)
	}
	if role := os.Getenv("ENCRYPT_ROLE"); role != "" {
		encryptRole(role, sock, api, mod, gen, res) // encrypt.go
		return
	}
	sign := func(asModule string, data string) (string, int) {
		body, _ := json.Marshal(map[string]string{"keyId": "primary", "algo": "HMACSHA256", "data": base64.StdEncoding.EncodeToString([]byte(data))})
		resp, err := c.Post("http://workload/modules/"+asModule+"/genid/"+gen+"/sign?api-version="+api, "application/json", bytes.NewReader(body))
		if err != nil {
			res["error"] = err.Error()
			return "", 0
		}
		defer resp.Body.Close()
		var out struct{ Digest string }
		json.NewDecoder(resp.Body).Decode(&out)
		return out.Digest, resp.StatusCode
	}
	if secs := os.Getenv("BENCH_SECONDS"); secs != "" {
		// Load mode for make bench (bench.go).
		d, _ := time.ParseDuration(secs + "s")
		clients := 1
		fmt.Sscan(os.Getenv("BENCH_CLIENTS"), &clients)
		rate, err := benchSign(sock, api, mod, gen, clients, d)
		if err != nil {
			res["error"] = err.Error()
			return
		}
		res["sign_per_s"] = rate
		return
	}
	resource := url.QueryEscape(hub + "/devices/" + dev + "/modules/" + mod)
	expiry := fmt.Sprint(time.Now().Add(time.Hour).Unix())
	digest, code := sign(mod, resource+"\n"+expiry)
	res["sign_status"] = code
	_, res["sign_as_other_status"] = sign(os.Getenv("OTHER_MODULE"), "x")
	token := "SharedAccessSignature sr=" + resource + "&sig=" + url.QueryEscape(digest) + "&se=" + expiry
	resp, err := c.Get("http://workload/trust-bundle?api-version=" + api)
	if err != nil {
		res["error"] = err.Error()
		return
	}
	var tb struct{ Certificate string }
	json.NewDecoder(resp.Body).Decode(&tb)
	resp.Body.Close()
	res["trust_bundle_status"] = resp.StatusCode
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(tb.Certificate))
	// A server certificate from the edge CA, as edgeHub asks for one.
	if os.Getenv("WANT_SERVER_CERT") != "" {
		body, _ := json.Marshal(map[string]string{"commonName": mod, "expiration": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
		resp, err := c.Post("http://workload/modules/"+mod+"/genid/"+gen+"/certificate/server?api-version="+api, "application/json", bytes.NewReader(body))
		if err != nil {
			res["error"] = err.Error()
			return
		}
		var sc struct {
			Certificate string
			PrivateKey  struct{ Type, Bytes string }
		}
		json.NewDecoder(resp.Body).Decode(&sc)
		resp.Body.Close()
		res["server_cert_status"] = resp.StatusCode
		pair, err := tls.X509KeyPair([]byte(sc.Certificate), []byte(sc.PrivateKey.Bytes))
		if err == nil {
			leaf, _ := x509.ParseCertificate(pair.Certificate[0])
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: mod})
		}
		res["server_cert_ok"] = err == nil
		if err != nil {
			res["server_cert_error"] = err.Error()
		}
		// A name the module was not given (the hub's, as a hostile module
		// would ask to impersonate edgeHub): refused.
		body, _ = json.Marshal(map[string]string{"commonName": "edgeHub", "expiration": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
		if resp, err := c.Post("http://workload/modules/"+mod+"/genid/"+gen+"/certificate/server?api-version="+api, "application/json", bytes.NewReader(body)); err == nil {
			var e struct{ Message string }
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			res["server_cert_foreign_status"], res["server_cert_foreign_message"] = resp.StatusCode, e.Message
		}
	}
	if os.Getenv("WANT_SERVER_CERT") != "" {
		identityCert(c, api, hub, dev, mod, pool, res)
		encryptDecrypt(c, api, mod, gen, res)
		resp, err := c.Get("http://workload/manifest-trust-bundle?api-version=" + api)
		if err == nil {
			var mb struct{ Certificate *string }
			json.NewDecoder(resp.Body).Decode(&mb)
			resp.Body.Close()
			res["manifest_trust_bundle_status"] = resp.StatusCode
			res["manifest_trust_bundle_present"] = mb.Certificate != nil
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+hub+"/devices/"+dev+"/modules/"+mod+"/messages/events?api-version=2020-03-13", strings.NewReader(`{"from":"inside the container"}`))
	req.Header.Set("Authorization", token)
	req.Header.Set("Content-Type", "application/json")
	hresp, err := hc.Do(req)
	if err != nil {
		res["error"] = err.Error()
		return
	}
	io.Copy(io.Discard, hresp.Body)
	hresp.Body.Close()
	res["hub_status"] = hresp.StatusCode
}

// identityCert asks for the module's identity (client) certificate and
// checks it against the trust bundle and the module's hub identity URI.
func identityCert(c *http.Client, api, hub, dev, mod string, pool *x509.CertPool, res map[string]any) {
	resp, err := c.Post("http://workload/modules/"+mod+"/certificate/identity?api-version="+api, "application/json", strings.NewReader("{}"))
	if err != nil {
		res["error"] = err.Error()
		return
	}
	var ic struct {
		Certificate string
		PrivateKey  struct{ Type, Bytes string }
		Expiration  string
	}
	json.NewDecoder(resp.Body).Decode(&ic)
	resp.Body.Close()
	res["identity_cert_status"] = resp.StatusCode
	pair, err := tls.X509KeyPair([]byte(ic.Certificate), []byte(ic.PrivateKey.Bytes))
	if err == nil {
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		want := "azureiot://" + hub + "/devices/" + dev + "/modules/" + mod
		if err == nil && (leaf.Subject.CommonName != mod || len(leaf.URIs) != 1 || leaf.URIs[0].String() != want) {
			err = fmt.Errorf("identity certificate names CN %q URIs %v; want CN %q URI %s", leaf.Subject.CommonName, leaf.URIs, mod, want)
		}
		if exp, perr := time.Parse(time.RFC3339, ic.Expiration); err == nil && (perr != nil || !exp.Equal(leaf.NotAfter)) {
			err = fmt.Errorf("expiration %q is not the certificate's NotAfter %v", ic.Expiration, leaf.NotAfter)
		}
	}
	res["identity_cert_ok"] = err == nil
	if err != nil {
		res["identity_cert_error"] = err.Error()
	}
}

// encryptDecrypt round-trips a secret through the workload API, checks
// that another generation id cannot decrypt it, and that the module
// cannot decrypt as another module.
func encryptDecrypt(c *http.Client, api, mod, gen string, res map[string]any) {
	call := func(asModule, genID, op string, body map[string]string) (string, int) {
		b, _ := json.Marshal(body)
		resp, err := c.Post("http://workload/modules/"+asModule+"/genid/"+genID+"/"+op+"?api-version="+api, "application/json", bytes.NewReader(b))
		if err != nil {
			res["error"] = err.Error()
			return "", 0
		}
		defer resp.Body.Close()
		var out map[string]string
		json.NewDecoder(resp.Body).Decode(&out)
		if op == "encrypt" {
			return out["ciphertext"], resp.StatusCode
		}
		return out["plaintext"], resp.StatusCode
	}
	secret := base64.StdEncoding.EncodeToString([]byte("the module's secret"))
	iv := base64.StdEncoding.EncodeToString([]byte("0123456789")) // SDK samples use 10 bytes
	ct, code := call(mod, gen, "encrypt", map[string]string{"plaintext": secret, "initializationVector": iv})
	res["encrypt_status"] = code
	pt, code := call(mod, gen, "decrypt", map[string]string{"ciphertext": ct, "initializationVector": iv})
	res["decrypt_status"] = code
	res["decrypt_roundtrip"] = pt == secret && ct != secret && ct != ""
	_, res["decrypt_other_generation_status"] = call(mod, gen+"x", "decrypt", map[string]string{"ciphertext": ct, "initializationVector": iv})
	_, res["decrypt_as_other_status"] = call(os.Getenv("OTHER_MODULE"), gen, "decrypt", map[string]string{"ciphertext": ct, "initializationVector": iv})
	_, res["encrypt_bad_body_status"] = call(mod, gen, "encrypt", map[string]string{"plaintext": "not base64!", "initializationVector": iv})
}
