package superconfig

import (
	"fmt"
	"strings"

	keysconfig "github.com/edgev2/edgev2/keys/config"
)

func (c *Config) planKeys(r *ids, p *plan) error {
	k := c.Keys
	p.keyd = keysconfig.Config{Homedir: keydHome, PKCS11LibPath: k.PKCS11LibPath, PKCS11BaseSlot: k.PKCS11BaseSlot, PKCS11Sessions: k.PKCS11Sessions}
	if k.PKCS11LibPath != "" && !strings.HasPrefix(k.PKCS11LibPath, "/") {
		return c.bad("keys.pkcs11_lib_path", fmt.Sprintf("%q is not an absolute path", k.PKCS11LibPath), "use e.g. /usr/lib/softhsm/libsofthsm2.so")
	}
	if k.PKCS11BaseSlot != "" {
		if msg := c.checkPKCS11URI(k.PKCS11BaseSlot); msg != "" {
			return c.bad("keys.pkcs11_base_slot", msg, `set pkcs11_lib_path and use an RFC 7512 URI like "pkcs11:token=edgev2?pin-source=file:///etc/edgev2/pin"`)
		}
	}
	if k.PKCS11Sessions < 0 || k.PKCS11Sessions > 256 {
		return c.bad("keys.pkcs11_sessions", fmt.Sprintf("%d is out of range", k.PKCS11Sessions), "use 1..256, or leave it out for 8")
	}
	for _, id := range sortedKeys(c.PreloadedKeys) {
		uri, key := c.PreloadedKeys[id], "preloaded_keys."+id
		if err := keysconfig.ValidateID(id); err != nil {
			return c.bad(key, err.Error(), "use a key id of printable UTF-8")
		}
		switch {
		case isFileURI(uri):
			if msg := checkFileURI(uri); msg != "" {
				return c.bad(key, msg, `use "file:///path/to/key.pem"`)
			}
		case isPKCS11URI(uri):
			if msg := c.checkPKCS11URI(uri); msg != "" {
				return c.bad(key, msg, `use "pkcs11:token=...;object=<label>" and set [keys] pkcs11_lib_path`)
			}
		default:
			return c.bad(key, "unsupported URI scheme", `use "file:///..." or "pkcs11:..."`)
		}
		if err := r.addKey(c, key, id, uri); err != nil {
			return err
		}
		r.preloadedKeyDefined[id] = true
	}
	return nil
}
