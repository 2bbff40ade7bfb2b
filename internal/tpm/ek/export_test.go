package ek

// The steps of Find, for the external tests that drive a TPM through
// internal/tpm (which imports this package).
var (
	ReadPublic = readPublic
	Create     = create
	Flush      = flush
	Persist    = persist
)
