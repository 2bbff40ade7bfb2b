package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// principal is who a request authenticated as.
type principal struct {
	service        bool
	device, module string
	how            string // for logs: "service-sas", "device-sas", "module-sas", "x509"
}

func (p principal) String() string {
	switch {
	case p.service:
		return p.how
	case p.module != "":
		return p.how + ":" + p.device + "/" + p.module
	}
	return p.how + ":" + p.device
}

// allowed: the service policy may do everything; a device may read
// itself, manage its own modules (an edge device's scope on IoT Hub) and
// send as itself; a module may only send as itself. Registry reads need a
// policy with RegistryRead (or the edge device's scope): a module's token
// reading its own identity, keys included, is 401 as on the real hub.
func allowed(p principal, rt route, method string) bool {
	if p.service {
		return rt.kind != "events" // the service cannot send device-to-cloud
	}
	if p.device != rt.device {
		return false
	}
	if p.module != "" {
		return rt.module == p.module && rt.kind == "events"
	}
	switch rt.kind {
	case "device":
		return method == http.MethodGet
	case "modules", "module":
		return true
	case "events":
		return rt.module == ""
	}
	return false
}

// authenticate finds the caller: a SAS in Authorization (service policy,
// device or module scoped) or, without one, a TLS client certificate whose
// thumbprint a device registered.
func (s *Server) authenticate(r *http.Request, now time.Time) (principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := ParseSAS(h)
		if err != nil {
			return principal{}, err
		}
		return s.authenticateSAS(tok, now)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return s.authenticateCert(r.TLS.PeerCertificates, now)
	}
	return principal{}, fmt.Errorf("%w: no Authorization header and no client certificate", errUnauthorized)
}

// authenticateSAS: as on IoT Hub, the token's audience must be the hub's
// own host name, whatever Host the request carried.
func (s *Server) authenticateSAS(tok *SAS, now time.Time) (principal, error) {
	host, path, _ := strings.Cut(tok.Resource, "/")
	if !strings.EqualFold(host, s.cfg.Hostname) {
		return principal{}, fmt.Errorf("%w: token for host %q, not %q", errUnauthorized, host, s.cfg.Hostname)
	}
	if path == "" || tok.KeyName != "" {
		if tok.KeyName != s.cfg.ServicePolicyName || s.policyKey == nil {
			return principal{}, fmt.Errorf("%w: unknown policy %q", errUnauthorized, tok.KeyName)
		}
		if err := tok.Verify(now, s.policyKey); err != nil {
			return principal{}, err
		}
		return principal{service: true, how: "service-sas"}, nil
	}
	parts := strings.Split(path, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(parts) == 2 && parts[0] == "devices":
		d, ok := s.reg.Devices[parts[1]]
		if !ok || d.Device.Status != "enabled" {
			return principal{}, fmt.Errorf("%w: device %q unknown or disabled", errUnauthorized, parts[1])
		}
		if err := tok.Verify(now, sasKeys(d.Device.Authentication)...); err != nil {
			return principal{}, err
		}
		return principal{device: parts[1], how: "device-sas"}, nil
	case len(parts) == 4 && parts[0] == "devices" && parts[2] == "modules":
		d, ok := s.reg.Devices[parts[1]]
		if !ok || d.Device.Status != "enabled" {
			return principal{}, fmt.Errorf("%w: device %q unknown or disabled", errUnauthorized, parts[1])
		}
		m, ok := d.Modules[parts[3]]
		if !ok {
			return principal{}, fmt.Errorf("%w: module %q unknown", errUnauthorized, parts[3])
		}
		if err := tok.Verify(now, sasKeys(m.Authentication)...); err != nil {
			return principal{}, err
		}
		return principal{device: parts[1], module: parts[3], how: "module-sas"}, nil
	}
	return principal{}, fmt.Errorf("%w: resource %q is not a hub, device or module", errUnauthorized, tok.Resource)
}

// Thumbprints returns a certificate's SHA-1 and SHA-256 thumbprints in
// upper-case hex, the forms IoT Hub registers.
func Thumbprints(cert *x509.Certificate) (sha1Hex, sha256Hex string) {
	s1 := sha1.Sum(cert.Raw)
	s256 := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))
}

// TrustCAs adds verified CA certificates: a certificateAuthority device
// whose id is its certificate's CN authenticates with any certificate that
// chains to one of them (the hub's uploaded, verified CA certificates).
func (s *Server) TrustCAs(cas []*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cas == nil {
		s.cas = x509.NewCertPool()
	}
	for _, c := range cas {
		s.cas.AddCert(c)
	}
}

func (s *Server) authenticateCert(chain []*x509.Certificate, now time.Time) (principal, error) {
	leaf := chain[0]
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return principal{}, fmt.Errorf("%w: client certificate outside its validity", errUnauthorized)
	}
	t1, t256 := Thumbprints(leaf)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, d := range s.reg.Devices {
		a := d.Device.Authentication
		if a.Type != AuthSelfSigned || a.X509Thumbprint == nil || d.Device.Status != "enabled" {
			continue
		}
		for _, t := range []string{a.X509Thumbprint.PrimaryThumbprint, a.X509Thumbprint.SecondaryThumbprint} {
			if t != "" && (t == t1 || t == t256) {
				return principal{device: id, how: "x509"}, nil
			}
		}
	}
	if d, ok := s.reg.Devices[leaf.Subject.CommonName]; ok && s.cas != nil && d.Device.Status == "enabled" &&
		(d.Device.Authentication.Type == AuthCertificateAuthority || d.ChainToo) {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: s.cas, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			return principal{device: leaf.Subject.CommonName, how: "x509-ca"}, nil
		}
		return principal{}, fmt.Errorf("%w: certificate of %q does not chain to a verified CA: %v", errUnauthorized, leaf.Subject.CommonName, err)
	}
	return principal{}, fmt.Errorf("%w: no device has thumbprint %s", errUnauthorized, t256)
}
