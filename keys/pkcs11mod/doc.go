// Package pkcs11mod holds the tests of libedgev2-pkcs11.so, the PKCS#11
// module whose C sources are in csrc/ (built by `make pkcs11mod`); docs/pkcs11.md.
package pkcs11mod
