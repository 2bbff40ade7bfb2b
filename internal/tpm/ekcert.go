package tpm

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edgev2/edgev2/fault"
)

// TCG EK Credential Profile 2.0, 3.2.9: the TPM's manufacturer, model and
// firmware version ride in a critical SubjectAltName as a directoryName.
var (
	oidSAN             = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	oidTCGKPEKCert     = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// EKCert is a TPM's endorsement key certificate with the TCG attributes
// of its SubjectAltName.
type EKCert struct {
	Cert         *x509.Certificate
	Manufacturer string // "id:00001014"
	Model        string
	Version      string // "id:20191023"
}

// maxEKCert bounds what is parsed from NV or a file.
const maxEKCert = 16 << 10

// ParseEKCert parses a DER EK certificate (NV indices may pad it with
// trailing bytes, which are cut at the DER length). The critical TCG
// SubjectAltName is handled here, not ignored: it must hold only a
// directoryName of TPM attributes, and any other critical extension Go
// does not know still fails verification.
func ParseEKCert(der []byte) (*EKCert, error) {
	if len(der) > maxEKCert {
		return nil, fault.New(fault.InvalidArgs, "EK certificate is %d bytes, over the %d-byte limit", len(der), maxEKCert)
	}
	der = trimDER(der)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fault.Wrap(fault.InvalidArgs, err, "EK certificate is not a valid X.509 certificate: %v", err)
	}
	ek := &EKCert{Cert: cert}
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		handled, err := ek.parseTPMSAN(ext.Value)
		if err != nil {
			return nil, fault.Wrap(fault.InvalidArgs, err, "EK certificate SubjectAltName: %v", err)
		}
		if handled {
			unhandled := cert.UnhandledCriticalExtensions[:0]
			for _, id := range cert.UnhandledCriticalExtensions {
				if !id.Equal(oidSAN) {
					unhandled = append(unhandled, id)
				}
			}
			cert.UnhandledCriticalExtensions = unhandled
		}
	}
	return ek, nil
}

// parseTPMSAN reads the TPM attributes from a SubjectAltName; handled is
// true when every name in it is one this package understands.
func (ek *EKCert) parseTPMSAN(value []byte) (handled bool, err error) {
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(value, &names)
	if err != nil || len(rest) != 0 {
		return false, errors.New("not a GeneralNames sequence")
	}
	handled = true
	for _, n := range names {
		// directoryName [4] EXPLICIT Name; Go handles dNSName [2],
		// rfc822Name [1], uniformResourceIdentifier [6], iPAddress [7].
		switch {
		case n.Class == asn1.ClassContextSpecific && n.Tag == 4:
			var rdns pkix.RDNSequence
			if rest, err := asn1.Unmarshal(n.Bytes, &rdns); err != nil || len(rest) != 0 {
				return false, errors.New("directoryName is not a Name")
			}
			for _, rdn := range rdns {
				for _, atv := range rdn {
					s, ok := atv.Value.(string)
					switch {
					case !ok:
						return false, fmt.Errorf("attribute %v is not a string", atv.Type)
					case atv.Type.Equal(oidTPMManufacturer):
						ek.Manufacturer = s
					case atv.Type.Equal(oidTPMModel):
						ek.Model = s
					case atv.Type.Equal(oidTPMVersion):
						ek.Version = s
					default:
						handled = false
					}
				}
			}
		case n.Class == asn1.ClassContextSpecific && (n.Tag == 1 || n.Tag == 2 || n.Tag == 6 || n.Tag == 7):
		default:
			handled = false
		}
	}
	if ek.Manufacturer == "" {
		return false, errors.New("no TPM manufacturer (2.23.133.2.1) in the directoryName")
	}
	return handled, nil
}

// trimDER cuts b at the end of its outer DER element.
func trimDER(b []byte) []byte {
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(b, &raw); err == nil && len(rest) > 0 {
		return b[:len(b)-len(rest)]
	}
	return b
}

// ParseCABundle reads PEM certificates: self-signed ones become roots,
// the others intermediates.
func ParseCABundle(pemData []byte) (roots, intermediates *x509.CertPool, n int, err error) {
	roots, intermediates = x509.NewCertPool(), x509.NewCertPool()
	for len(pemData) > 0 {
		var blk *pem.Block
		blk, pemData = pem.Decode(pemData)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, 0, fault.Wrap(fault.InvalidArgs, err, "CA bundle certificate %d: %v", n+1, err)
		}
		if c.CheckSignatureFrom(c) == nil && strings.EqualFold(c.Subject.String(), c.Issuer.String()) {
			roots.AddCert(c)
		} else {
			intermediates.AddCert(c)
		}
		n++
	}
	if n == 0 {
		return nil, nil, 0, fault.New(fault.InvalidArgs, "the CA bundle holds no PEM CERTIFICATE")
	}
	return roots, intermediates, n, nil
}

// Verify checks the EK certificate's chain to a root in the maker's CA
// bundle (PEM) at now, and that it is an EK certificate.
func (ek *EKCert) Verify(bundlePEM []byte, now time.Time) ([][]*x509.Certificate, error) {
	roots, inter, _, err := ParseCABundle(bundlePEM)
	if err != nil {
		return nil, err
	}
	if len(ek.Cert.UnhandledCriticalExtensions) > 0 {
		return nil, fault.New(fault.InvalidArgs, "EK certificate has critical extensions this verifier does not understand: %v", ek.Cert.UnhandledCriticalExtensions)
	}
	chains, err := ek.Cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fault.Wrap(fault.NotAuthorized, err, "EK certificate (issuer %q, serial %s) does not chain to the maker's CA bundle: %v; the TPM is not the maker's, or the bundle is the wrong one", ek.Cert.Issuer.String(), ek.Cert.SerialNumber, err)
	}
	ekEKU := false
	for _, u := range ek.Cert.UnknownExtKeyUsage {
		ekEKU = ekEKU || u.Equal(oidTCGKPEKCert)
	}
	if len(ek.Cert.ExtKeyUsage)+len(ek.Cert.UnknownExtKeyUsage) > 0 && !ekEKU {
		return nil, fault.New(fault.InvalidArgs, "the certificate's extended key usage lacks tcg-kp-EKCertificate (2.23.133.8.1): it is not an EK certificate")
	}
	return chains, nil
}

// timeNow is the clock certificate checks use.
var timeNow = time.Now
