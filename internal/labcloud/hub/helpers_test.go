package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// hmacB64 is the Azure signing primitive written out independently of sas.go.
func hmacB64(key []byte, s string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
