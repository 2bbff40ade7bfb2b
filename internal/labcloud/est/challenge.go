package est

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/edgev2/edgev2/internal/atomicfile"
)

// ChallengePassword is one [[est.challenge_passwords]] entry: a shared
// secret a device puts in its CSR's challengePassword attribute (PKCS#9).
type ChallengePassword struct {
	Password string `toml:"password"`
	// CommonName binds the secret to one device (per-device); empty lets
	// any device use it.
	CommonName string `toml:"common_name"`
	// OneTime: refused once an enrollment with it succeeded.
	OneTime bool `toml:"one_time"`
}

var oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}

// challengeUsedFile records the one-time secrets used, as SHA-256 hex.
const challengeUsedFile = "challenge-used.json"

// challenges checks challenge passwords and remembers one-time ones used.
type challenges struct {
	list []ChallengePassword
	path string
	mu   sync.Mutex
	used map[string]bool
}

func openChallenges(dir string, list []ChallengePassword) (*challenges, error) {
	c := &challenges{list: list, path: filepath.Join(dir, challengeUsedFile), used: map[string]bool{}}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	var used []string
	if err := json.Unmarshal(data, &used); err != nil {
		return nil, fmt.Errorf("parse %s: %w", c.path, err)
	}
	for _, h := range used {
		c.used[h] = true
	}
	return c, nil
}

// csrChallengePassword extracts the challengePassword attribute of a
// parsed CSR: ok is false when there is none; an error when it is malformed.
func csrChallengePassword(csr *x509.CertificateRequest) (pw string, ok bool, err error) {
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0"`
	}
	if rest, err := asn1.Unmarshal(csr.RawTBSCertificateRequest, &info); err != nil || len(rest) > 0 {
		return "", false, fmt.Errorf("the CSR's attributes do not parse")
	}
	for _, raw := range info.Attributes {
		var attr struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		if rest, err := asn1.Unmarshal(raw.FullBytes, &attr); err != nil || len(rest) > 0 {
			return "", false, fmt.Errorf("a CSR attribute does not parse")
		}
		if !attr.Type.Equal(oidChallengePassword) {
			continue
		}
		if ok || len(attr.Values) != 1 {
			return "", false, fmt.Errorf("the CSR must carry exactly one challengePassword value")
		}
		v := attr.Values[0]
		switch v.Tag { // DirectoryString (RFC 2985 5.4.1)
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagT61String, asn1.TagBMPString, asn1.TagIA5String:
		default:
			return "", false, fmt.Errorf("the challengePassword is not a DirectoryString")
		}
		if v.Class != asn1.ClassUniversal || v.IsCompound || len(v.Bytes) == 0 || len(v.Bytes) > 255 {
			return "", false, fmt.Errorf("the challengePassword is empty, too long or malformed")
		}
		pw, ok = string(v.Bytes), true
	}
	return pw, ok, nil
}

// verify checks a request's challenge password for common name cn and, for
// a one-time secret, marks it used. The password never appears in a reply.
func (c *challenges) verify(csr *x509.CertificateRequest) *httpError {
	pw, ok, err := csrChallengePassword(csr)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if !ok {
		return errorf(http.StatusForbidden, "this EST CA requires a challenge password: put the challengePassword attribute (1.2.840.113549.1.9.7) that /csrattrs asks for in the CSR")
	}
	got := sha256.Sum256([]byte(pw))
	match := -1
	for i, e := range c.list {
		want := sha256.Sum256([]byte(e.Password))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 && match < 0 {
			match = i
		}
	}
	if match < 0 {
		return errorf(http.StatusForbidden, "the challenge password is wrong")
	}
	e := c.list[match]
	if e.CommonName != "" && e.CommonName != csr.Subject.CommonName {
		return errorf(http.StatusForbidden, "the challenge password is not the one for common name %q", csr.Subject.CommonName)
	}
	if !e.OneTime {
		return nil
	}
	key := hex.EncodeToString(got[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used[key] {
		return errorf(http.StatusForbidden, "the challenge password was already used; it is valid for one enrollment only")
	}
	c.used[key] = true
	if err := c.save(); err != nil {
		delete(c.used, key)
		return errorf(http.StatusInternalServerError, "cannot record the used challenge password; the labcloud log has the details")
	}
	return nil
}

// save writes the used set; c.mu is held.
func (c *challenges) save() error {
	list := make([]string, 0, len(c.used))
	for h := range c.used {
		list = append(list, h)
	}
	data, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(c.path, data, 0o600)
}
