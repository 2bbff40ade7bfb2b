package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	"github.com/edgev2/edgev2/identity/connstr"
)

func (k *checker) checkContainerd(ctx context.Context) {
	sock := k.o.containerdSocket
	if sock == "" && k.cfg.modrtd != nil {
		sock = k.cfg.modrtd.Containerd
	}
	if sock == "" {
		sock = "/run/containerd/containerd.sock"
	}
	ctx, cancel := context.WithTimeout(ctx, k.o.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		k.add("containerd", statusError, fmt.Sprintf("containerd is not reachable at %s: %v", sock, err),
			"start it: `systemctl start containerd` (or correct containerd_address in modrtd.toml)")
		return
	}
	conn.Close()
	k.ok("containerd", "containerd answers at %s", sock)
}

// endpoint is a cloud service the device must reach.
type endpoint struct {
	name, hostPort, where string
	trusted               []string // Certificates ids of extra trust anchors
}

// endpoints lists the cloud endpoints the configs name.
func (cfg deviceConfigs) endpoints() []endpoint {
	var eps []endpoint
	add := func(name, raw, where string, trusted []string) {
		if hp := hostPort(raw); hp != "" {
			eps = append(eps, endpoint{name: name, hostPort: hp, where: where, trusted: trusted})
		}
	}
	if c := cfg.identityd; c != nil {
		p := c.Provisioning
		switch p.Source {
		case "dps":
			add("cloud.dps", p.GlobalEndpoint, "identityd.toml provisioning.global_endpoint", c.Cloud.TrustedCerts)
		case "manual":
			host := p.IoTHubHostname
			if cs, err := connstr.Parse(p.ConnectionString); err == nil && p.ConnectionString != "" {
				host = cs.HostName
			}
			add("cloud.hub", host, "identityd.toml provisioning", c.Cloud.TrustedCerts)
		}
	}
	if c := cfg.certd; c != nil {
		add("cloud.est", c.EST.URL, "certd.toml est.url", c.EST.TrustedCerts)
		for id, is := range c.Issuance {
			if is.URL != "" && hostPort(is.URL) != hostPort(c.EST.URL) {
				add("cloud.est."+id, is.URL, "certd.toml cert_issuance."+id+".url", c.EST.TrustedCerts)
			}
		}
	}
	return eps
}

// hostPort turns a URL or host[:port] into host:port (443 by default).
func hostPort(raw string) string {
	if raw == "" {
		return ""
	}
	host := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return ""
		}
		host = u.Host
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	return host
}

func (k *checker) checkCloud(ctx context.Context) {
	eps := k.cfg.endpoints()
	if len(eps) == 0 {
		k.add("cloud", statusSkipped, "the configs name no cloud endpoint", "")
		return
	}
	for _, ep := range eps {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if len(ep.trusted) > 0 && !k.up[certsapi.BusName] {
			k.add(ep.name, statusSkipped, fmt.Sprintf("%s: its trusted certificates (%s) are in the Certificates service, which is not reachable", ep.hostPort, strings.Join(ep.trusted, ", ")), "")
			continue
		}
		if len(ep.trusted) > 0 {
			cc := cclient.New(k.conn)
			for _, id := range ep.trusted {
				if p, err := cc.Get(ctx, id); err == nil {
					pool.AppendCertsFromPEM([]byte(p))
				}
			}
		}
		if err := tlsHandshake(ctx, ep.hostPort, pool, k.o.timeout); err != nil {
			var ue x509.UnknownAuthorityError
			var he x509.HostnameError
			fix := fmt.Sprintf("check the network, DNS and firewall for %s (TCP and TLS), and %s", ep.hostPort, ep.where)
			if errors.As(err, &ue) || errors.As(err, &he) || strings.Contains(err.Error(), "certificate") {
				fix = fmt.Sprintf("the server's certificate is not trusted: add its CA to trusted_certs (%s) or the system roots", ep.where)
			}
			k.add(ep.name, statusError, fmt.Sprintf("%s (%s): %v", ep.hostPort, ep.where, err), fix)
			continue
		}
		k.ok(ep.name, "%s answers TLS with a trusted certificate", ep.hostPort)
	}
}

// tlsHandshake connects to hostPort and completes a TLS handshake that
// verifies the server against pool.
func tlsHandshake(ctx context.Context, hostPort string, pool *x509.CertPool, timeout time.Duration) error {
	host, _, _ := net.SplitHostPort(hostPort)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{ServerName: host, RootCAs: pool, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return err
	}
	return conn.Close()
}
