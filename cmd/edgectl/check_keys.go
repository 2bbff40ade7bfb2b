package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	certsapi "github.com/edgev2/edgev2/certs/api"
	cclient "github.com/edgev2/edgev2/certs/client"
	certsconfig "github.com/edgev2/edgev2/certs/config"
	"github.com/edgev2/edgev2/certs/revocation"
	"github.com/edgev2/edgev2/fault"
	kclient "github.com/edgev2/edgev2/keys/client"
	"github.com/edgev2/edgev2/keys/tokencap"
)

// keyRef is a key (and maybe the certificate issued for it) that a config
// refers to.
type keyRef struct {
	key, cert string
	where     string // "certd.toml cert_issuance.device-cert.key_id"
}

// references lists the keys and certificate/key pairs the configs name.
func (cfg deviceConfigs) references() []keyRef {
	var refs []keyRef
	add := func(key, cert, where string) {
		if key == "" {
			return
		}
		// One pair named by several configs (the edge CA: certd issues it,
		// modrtd uses it) is checked and reported once, naming them all.
		for i := range refs {
			if refs[i].key == key && refs[i].cert == cert {
				refs[i].where += ", " + where
				return
			}
		}
		refs = append(refs, keyRef{key: key, cert: cert, where: where})
	}
	if c := cfg.certd; c != nil {
		ids := make([]string, 0, len(c.Issuance))
		for id := range c.Issuance {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			key := c.Issuance[id].KeyID
			if key == "" {
				key = id
			}
			add(key, id, fmt.Sprintf("certd.toml cert_issuance.%s", id))
		}
		add(c.EST.IdentityKey, c.EST.IdentityCert, "certd.toml est.identity_key")
		add(c.EST.BootstrapIdentityKey, c.EST.BootstrapIdentityCert, "certd.toml est.bootstrap_identity_key")
	}
	if c := cfg.identityd; c != nil {
		if a := c.Provisioning.Attestation; a != nil {
			add(a.SymmetricKey, "", "identityd.toml provisioning.attestation.symmetric_key")
			add(a.GroupKey, "", "identityd.toml provisioning.attestation.group_key")
			if a.Method == "x509" {
				add(a.IdentityPK, a.IdentityCert, "identityd.toml provisioning.attestation.identity_pk")
			}
		}
		if a := c.Provisioning.Authentication; a != nil {
			add(a.DeviceIDPK, a.DeviceIDCert, "identityd.toml provisioning.authentication.device_id_pk")
		}
	}
	if c := cfg.modrtd; c != nil {
		add(c.EdgeCAKey, c.EdgeCACert, "modrtd.toml edge_ca_key")
	}
	return refs
}

// issuedByPolicy reports whether certd issues cert by itself (so a missing
// one is not yet an error).
func (cfg deviceConfigs) issuedByPolicy(cert string) bool {
	if cfg.certd == nil {
		return false
	}
	_, ok := cfg.certd.Issuance[cert]
	return ok || cert == cfg.certd.EST.IdentityCert
}

func (k *checker) checkKeysAndCerts(ctx context.Context) {
	now := k.o.now()
	if now.Year() < 2024 {
		k.add("clock", statusError, fmt.Sprintf("the clock says %s, which is before 2024: certificates will not verify", now.UTC().Format(time.RFC3339)),
			"set the time: enable NTP (`timedatectl set-ntp true`) or `date -s`")
	}
	keysUp, certsUp := k.up["org.edgev2.Keys1"], k.up[certsapi.BusName]
	if !keysUp || !certsUp {
		k.add("keys", statusSkipped, "the Keys or Certificates service is not reachable", "")
		k.add("certs.expiry", statusSkipped, "the Certificates service is not reachable", "")
		if now.Year() >= 2024 {
			k.ok("clock", "%s", now.UTC().Format(time.RFC3339))
		}
		return
	}
	kc, cc := kclient.New(k.conn), cclient.New(k.conn)
	k.checkKeysToken(ctx, kc)
	leafOf := func(id string) (*x509.Certificate, error) {
		pemText, err := cc.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		chain, err := certsapi.ParseChainPEM(pemText)
		if err != nil {
			return nil, fmt.Errorf("certificate %q: %w", id, err)
		}
		return chain[0], nil
	}
	refs := k.cfg.references()
	for _, r := range refs {
		name := "keys." + r.key
		if r.cert != "" {
			name = "certs." + r.cert
		}
		p, kerr := kc.Key(r.key).Properties(ctx)
		if fault.Is(kerr, fault.NotAuthorized) {
			k.add(name, statusWarning, fmt.Sprintf("key %q (%s): polkit denied this user a read", r.key, r.where), "run edgectl check as root")
			continue
		}
		if kerr != nil && !fault.Is(kerr, fault.NotFound) {
			k.add(name, statusError, fmt.Sprintf("key %q (%s): %s", r.key, r.where, fault.Message(kerr)), "run edgectl check as root; see `journalctl -u edgev2-keyd`")
			continue
		}
		keyMissing := kerr != nil
		if r.cert == "" {
			if keyMissing {
				k.add(name, statusError, fmt.Sprintf("key %q named by %s does not exist in the Keys service", r.key, r.where),
					fmt.Sprintf("import it (`edgectl keys create %s --type symmetric`, or [preloaded_keys] in the super-config) or correct %s", r.key, r.where))
			} else {
				k.ok(name, "key %q (%s) exists: %s", r.key, r.where, p.Type)
			}
			continue
		}
		leaf, cerr := leafOf(r.cert)
		if cerr != nil && !fault.Is(cerr, fault.NotFound) {
			k.add(name, statusError, fmt.Sprintf("certificate %q: %s", r.cert, fault.Message(cerr)), "re-issue it: `edgectl certs renew "+r.cert+"`")
			continue
		}
		certMissing := cerr != nil
		switch {
		case certMissing && k.cfg.issuedByPolicy(r.cert):
			k.add(name, statusWarning, fmt.Sprintf("certificate %q is not issued yet (key %q %s)", r.cert, r.key, map[bool]string{true: "not created yet", false: "exists"}[keyMissing]),
				"it is issued on first use; to issue it now: `edgectl certs renew "+r.cert+"`")
		case certMissing:
			k.add(name, statusError, fmt.Sprintf("certificate %q (paired with key %q by %s) does not exist", r.cert, r.key, r.where),
				"import it, add it to [preloaded_certs], or issue it with a [cert_issuance."+r.cert+"] policy")
		case keyMissing:
			k.add(name, statusError, fmt.Sprintf("certificate %q exists but its key %q (%s) does not exist in the Keys service", r.cert, r.key, r.where),
				fmt.Sprintf("restore the key, or issue a new certificate with a new key: `edgectl keys create %s` then `edgectl certs renew %s`", r.key, r.cert))
		default:
			certPub, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
			if err != nil || !bytes.Equal(certPub, p.PublicKeyDER) {
				k.add(name, statusError, fmt.Sprintf("certificate %q does not match key %q (%s): its public key is another key's", r.cert, r.key, r.where),
					fmt.Sprintf("renew the certificate for the current key: `edgectl certs renew %s` (or restore the key it was issued for)", r.cert))
				continue
			}
			k.ok(name, "certificate %q matches key %q (%s)", r.cert, r.key, p.Type)
		}
	}
	if len(refs) == 0 {
		k.add("keys", statusSkipped, "the configs name no keys", "")
	}
	k.checkExpiry(ctx, cc, leafOf, now)
}

// checkExpiry looks at every stored certificate's validity and at the
// clock against it.
func (k *checker) checkExpiry(ctx context.Context, cc *cclient.Client, leafOf func(string) (*x509.Certificate, error), now time.Time) {
	ids, err := cc.List(ctx)
	if err != nil {
		k.add("certs.expiry", statusError, "cannot list certificates: "+fault.Message(err), "run edgectl check as root")
		return
	}
	problems := 0
	var latestNotBefore time.Time
	for _, id := range ids {
		leaf, err := leafOf(id)
		if err != nil {
			continue
		}
		if leaf.NotBefore.After(latestNotBefore) {
			latestNotBefore = leaf.NotBefore
		}
		k.checkPacing(id, leaf)
		k.checkRevocation(ctx, cc, id)
		fix := fmt.Sprintf("renew it: `edgectl certs renew %s` (or import a new one if it is preloaded)", id)
		switch left := leaf.NotAfter.Sub(now); {
		case left <= 0:
			k.add("certs.expiry."+id, statusError, fmt.Sprintf("certificate %q expired at %s", id, leaf.NotAfter.UTC().Format(time.RFC3339)), fix)
			problems++
		case left < k.o.expiryWarning:
			k.add("certs.expiry."+id, statusWarning, fmt.Sprintf("certificate %q expires in %s (at %s)", id, left.Round(time.Minute), leaf.NotAfter.UTC().Format(time.RFC3339)), fix)
			problems++
		}
	}
	if problems == 0 {
		k.ok("certs.expiry", "%d certificates, none expires within %s", len(ids), k.o.expiryWarning)
	}
	if !latestNotBefore.IsZero() && now.Before(latestNotBefore.Add(-5*time.Minute)) {
		k.add("clock", statusError, fmt.Sprintf("the clock (%s) is behind a certificate's NotBefore (%s)", now.UTC().Format(time.RFC3339), latestNotBefore.UTC().Format(time.RFC3339)),
			"set the time: enable NTP (`timedatectl set-ntp true`)")
	} else if now.Year() >= 2024 {
		k.ok("clock", "%s, not behind any certificate", now.UTC().Format(time.RFC3339))
	}
}

// checkPacing says when the CA issued a certificate for no longer than its
// renewal threshold, so certd renews it part-way through its lifetime
// (at most once per min_interval) instead of at the threshold.
func (k *checker) checkPacing(id string, leaf *x509.Certificate) {
	if k.cfg.certd == nil {
		return
	}
	is, ok := k.cfg.certd.Issuance[id]
	if !ok || is.AutoRenew == nil || !is.AutoRenew.Paced(leaf.NotBefore, leaf.NotAfter) {
		return
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	k.add("certs.renewal."+id, statusWarning,
		fmt.Sprintf("certificate %q was issued for %s, at or below its renewal threshold %q: certd renews it at %d%% of its lifetime, at most once every %s",
			id, life.Round(time.Second), is.AutoRenew.Threshold, int(certsconfig.PaceFraction*100), is.AutoRenew.MinIntervalDuration()),
		fmt.Sprintf("the CA caps lifetimes; set [cert_issuance.%s.auto_renew] threshold below %s (e.g. \"80%%\")", id, life.Round(time.Second)))
}

// checkRevocation looks an EST-issued certificate up on the CRL its CA
// names, verified against its issuer, as certd does on its schedule.
func (k *checker) checkRevocation(ctx context.Context, cc *cclient.Client, id string) {
	if k.cfg.certd == nil {
		return
	}
	is, ok := k.cfg.certd.Issuance[id]
	if !ok || is.Method != "est" {
		return
	}
	name := "certs.revocation." + id
	pemText, err := cc.Get(ctx, id)
	if err != nil {
		return
	}
	chain, err := certsapi.ParseChainPEM(pemText)
	if err != nil || len(chain[0].CRLDistributionPoints) == 0 {
		return
	}
	issuers := append([]*x509.Certificate{}, chain[1:]...)
	anchors := x509.NewCertPool()
	for _, a := range k.cfg.certd.EST.TrustedCerts {
		if p, err := cc.Get(ctx, a); err == nil {
			if ac, err := certsapi.ParseChainPEM(p); err == nil {
				issuers = append(issuers, ac...)
				for _, c := range ac {
					anchors.AddCert(c)
				}
			}
		}
	}
	if len(k.cfg.certd.EST.TrustedCerts) == 0 {
		anchors = nil
	}
	crl, err := revocation.FetchCRL(ctx, chain[0].CRLDistributionPoints[0], anchors)
	if err == nil {
		var revoked bool
		if revoked, err = revocation.CheckRevoked(crl, chain[0], issuers, k.o.now()); err == nil && revoked {
			k.add(name, statusError, fmt.Sprintf("certificate %q (serial %s) is revoked by its CA", id, chain[0].SerialNumber.Text(16)),
				"certd re-enrolls it with a new key at its next CRL check ([est] crl_check_interval); to do it now: `edgectl certs renew "+id+"`, then see `journalctl -u edgev2-certd`")
			return
		}
	}
	if err != nil {
		k.add(name, statusWarning, fmt.Sprintf("certificate %q: its CRL cannot be checked: %s", id, fault.Message(err)), "check that the CA's CRL distribution point is reachable")
		return
	}
	k.ok(name, "certificate %q is not on its CA's CRL", id)
}

// checkKeysToken reports what the Keys service's token offers and the kinds
// of keys it cannot hold (creating one is NotSupported).
func (k *checker) checkKeysToken(ctx context.Context, kc *kclient.Client) {
	engine, err := kc.Engine(ctx)
	if err != nil {
		k.add("keys.token", statusWarning, "cannot read the Keys service's engine: "+fault.Message(err), "run edgectl check as root")
		return
	}
	if engine != "pkcs11" {
		k.ok("keys.token", "engine %q: every mechanism", engine)
		return
	}
	mechs, err := kc.TokenMechanisms(ctx)
	if err != nil {
		k.add("keys.token", statusWarning, "cannot read the token's mechanisms: "+fault.Message(err), "run edgectl check as root")
		return
	}
	if len(mechs) == 0 {
		k.add("keys.token", statusWarning, "the PKCS#11 token did not list its mechanisms; keys it cannot use fail only when used", "see `journalctl -u edgev2-keyd`")
		return
	}
	if missing := tokencap.CannotHold(mechs); len(missing) > 0 {
		k.add("keys.token", statusWarning, fmt.Sprintf("the PKCS#11 token cannot hold these keys (creating one is NotSupported): %s; it offers %s",
			strings.Join(missing, "; "), strings.Join(mechs, " ")),
			"use a token (or a PKCS#11 module version) that offers the missing mechanisms, or keep those keys off it")
		return
	}
	k.ok("keys.token", "the PKCS#11 token offers every mechanism keyd uses (%d mechanisms)", len(mechs))
}
