// Package pemfile reads the certificate files a lab cloud's configuration
// names (CA bundles, enrollment certificates) for the EST CA and DPS.
package pemfile

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// ReadCertificates returns the CERTIFICATE blocks of the PEM file at path,
// in order; other blocks (a key kept beside the certificate) are passed
// over. A file without a certificate is an error.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}
