// Package cloudhttp is the HTTPS plumbing the DPS, IoT Hub and EST clients
// share: client setup, one bounded round trip, error classification and
// sanitising of server text, Retry-After and a context-aware sleep.
package cloudhttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// Options shape the *http.Client NewClient makes.
type Options struct {
	// Anchors verify the server; nil uses the system roots. Verification
	// is never skipped.
	Anchors *x509.CertPool
	// Cert is the TLS client certificate, or nil for none. Its key is used
	// only through crypto.Signer, so it may live in an HSM or TPM.
	Cert *tls.Certificate
	// Timeout bounds the TLS handshake and the wait for response headers.
	Timeout time.Duration
	// MaxIdleConnsPerHost and IdleConnTimeout tune the connection pool.
	MaxIdleConnsPerHost int
	IdleConnTimeout     time.Duration
	// HTTP2 asks for HTTP/2 over the custom TLS config.
	HTTP2 bool
	// Renegotiate lets a TLS 1.2 server ask for the client certificate
	// later, on some paths only (EST servers do).
	Renegotiate bool
	// CheckRedirect decides about redirects; nil reports a 3xx as it is
	// instead of following it.
	CheckRedirect func(*http.Request, []*http.Request) error
}

// NewClient makes a client whose connections carry exactly o.Cert (or no
// client certificate) and verify the server against o.Anchors.
func NewClient(o Options) *http.Client {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.Anchors}
	if o.Renegotiate {
		tlsCfg.Renegotiation = tls.RenegotiateOnceAsClient
	}
	if cert := o.Cert; cert != nil {
		// GetClientCertificate, not Certificates: it is offered whatever
		// CA list the server names, and the key is used only through
		// crypto.Signer.
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       o.IdleConnTimeout,
		ForceAttemptHTTP2:     o.HTTP2,
	}
	redirect := o.CheckRedirect
	if redirect == nil {
		redirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &http.Client{Transport: tr, CheckRedirect: redirect}
}

// Response is a fully read HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// max is the body limit the round trip applied.
	max int
}

// Oversize returns an InvalidArgs fault when the body was longer than the
// limit RoundTrip applied (Body then holds the limit plus one byte), or nil.
func (r *Response) Oversize() error {
	if len(r.Body) > r.max {
		return fault.New(fault.InvalidArgs, "body is larger than %d bytes", r.max)
	}
	return nil
}

// RoundTrip sends req, bounded with its body by c.Timeout, and reads at most
// maxBody+1 bytes of the answer (see Response.Oversize). A failure to get a
// whole response is classified by Transport.
func RoundTrip(hc *http.Client, c Call, req *http.Request, maxBody int) (*Response, error) {
	parent := req.Context()
	ctx, cancel := context.WithTimeout(parent, c.Timeout)
	defer cancel()
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return nil, Transport(parent, ctx, c, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxBody)+1))
	if err != nil {
		return nil, Transport(parent, ctx, c, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data, max: maxBody}, nil
}

// Body returns a reader for b, or nil for a request without a body.
func Body(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// Sleep waits d or until ctx ends, returning ctx.Err() then.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
