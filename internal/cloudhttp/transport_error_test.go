package cloudhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// alert is crypto/tls's unexported alert type as received: a uint8.
type alert uint8

func (a alert) Error() string { return "remote error" }

func TestClientCertRefusedKnowsEveryFormOfTheAlert(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"tls.AlertError bad certificate", tls.AlertError(42), true},
		{"tls.AlertError certificate required", tls.AlertError(116), true},
		{"tls.AlertError handshake failure", tls.AlertError(40), false},
		{"remote error around the uint8 alert", &net.OpError{Op: "remote error", Err: alert(48)}, true},
		{"remote error around another alert", &net.OpError{Op: "remote error", Err: alert(80)}, false},
		{"remote error known by its text", &net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}, true},
		{"a dial error", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{"nothing TLS", errors.New("EOF"), false},
	}
	for _, c := range cases {
		if got := ClientCertRefused(c.err); got != c.want {
			t.Errorf("%s: ClientCertRefused = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTransportNamesTrustTimeoutAndReachability(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(300 * time.Millisecond) }))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	call := func(client *http.Client, url string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s succeeded", url)
		}
		return Transport(context.Background(), ctx, Call{Service: "DPS", Host: "h", What: "register", Timeout: timeout}, err)
	}
	cases := []struct {
		name string
		err  error
		kind fault.Kind
		want string
	}{
		{"untrusted", call(http.DefaultClient, srv.URL, 5*time.Second), fault.Unavailable, "DPS h is not trusted"},
		{"slow", call(srv.Client(), srv.URL, 100*time.Millisecond), fault.Unavailable, "DPS register at h: no answer within 100ms"},
		{"closed", call(http.DefaultClient, closedURL, 5*time.Second), fault.Unavailable, "DPS h cannot be reached: dial: "},
	}
	for _, c := range cases {
		if !fault.Is(c.err, c.kind) || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: %v, want %v with %q", c.name, c.err, c.kind, c.want)
		}
	}
}
