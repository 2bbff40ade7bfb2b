package tpm

import "testing"

// Test helpers for the external tests (flow_test.go), which import
// identity and so cannot be in package tpm.
var (
	CtxT         = ctxT
	MustTPM      = mustTPM
	OpenTPM      = openTPM
	NewFactoryCA = newFactoryCA
)

// Certify is factoryCA.certify for the external tests.
func (ca *factoryCA) Certify(t *testing.T, csrPEM string) string { return ca.certify(t, csrPEM) }

// File is the factory CA's PEM file.
func (ca *factoryCA) File() string { return ca.file }

// SamePublic is samePublic for the external tests.
var SamePublic = samePublic
