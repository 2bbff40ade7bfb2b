// Package testpki builds the certificates, keys, CSRs and PEM files that
// tests need; it is for tests only and imports no other edgev2 package.
package testpki
