// Package pkcs11uri parses RFC 7512 PKCS#11 URIs (token and object
// selectors, PIN sources) without loading any PKCS#11 module.
package pkcs11uri

import (
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/internal/credential"
)

// URI is a parsed RFC 7512 PKCS#11 URI. It selects a library, a
// token and optionally an object on it. The PIN it may carry is kept out of
// String, errors and %v, so a parsed URI is safe to log.
type URI struct {
	// Path attributes: the token.
	Token        string // CKA token label
	Manufacturer string
	Serial       string
	Model        string
	// Path attributes: the library.
	LibraryManufacturer string
	LibraryDescription  string
	LibraryVersion      string // "M" or "M.N"
	// Path attributes: the slot.
	SlotID           uint
	HasSlotID        bool
	SlotDescription  string
	SlotManufacturer string
	// Path attributes: the object.
	Object string // CKA_LABEL
	ID     []byte // CKA_ID; nil when absent
	Type   string // private, public, secret-key, cert or data

	// Query attributes.
	PINSource  string // file path, file: URI or credential:NAME holding the PIN
	ModulePath string
	ModuleName string

	pinValue string // never rendered; read it through PIN
}

// pkcs11ObjectTypes are the values RFC 7512 allows for the type attribute.
var pkcs11ObjectTypes = map[string]bool{
	"private": true, "public": true, "secret-key": true, "cert": true, "data": true,
}

// Parse parses an RFC 7512 URI such as
// "pkcs11:token=edge;object=device-id?pin-source=/etc/edgev2/pin".
// Unknown attributes are refused (a typo must not silently widen a match);
// vendor attributes ("x-...") are ignored. Errors name the offending
// attribute but never repeat the URI, which may hold a PIN.
func Parse(s string) (*URI, error) {
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, fault.New(fault.InvalidArgs, "not a PKCS#11 URI: it must start with %q", scheme)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return nil, fault.New(fault.InvalidArgs, "PKCS#11 URI contains a control character at byte %d; percent-encode it", i)
		}
	}
	rest := s[len(scheme):]
	path, query, hasQuery := strings.Cut(rest, "?")

	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			if attr == "" {
				continue // tolerate "pkcs11:token=a;"
			}
			if err := u.setPathAttr(attr, seen); err != nil {
				return nil, err
			}
		}
	}
	if hasQuery && query != "" {
		for _, attr := range strings.Split(query, "&") {
			if attr == "" {
				continue
			}
			if err := u.setQueryAttr(attr, seen); err != nil {
				return nil, err
			}
		}
	}
	if u.pinValue != "" && u.PINSource != "" {
		return nil, fault.New(fault.InvalidArgs, "PKCS#11 URI has both pin-value and pin-source; keep one")
	}
	return u, nil
}

// splitAttr splits "name=value" and decodes the value. what is "path" or "query".
func splitAttr(attr, what string, seen map[string]bool) (name, value string, err error) {
	name, raw, ok := strings.Cut(attr, "=")
	if !ok || name == "" {
		// The text may be a bare PIN typed in the wrong place: do not echo it.
		return "", "", fault.New(fault.InvalidArgs, "PKCS#11 URI has a %s attribute without the \"name=value\" form", what)
	}
	if !validAttrName(name) {
		return "", "", fault.New(fault.InvalidArgs, "PKCS#11 URI has a malformed %s attribute name", what)
	}
	if seen[name] {
		return "", "", fault.New(fault.InvalidArgs, "PKCS#11 URI repeats attribute %q", name)
	}
	seen[name] = true
	value, err = pctDecode(raw)
	if err != nil {
		return "", "", fault.New(fault.InvalidArgs, "PKCS#11 URI attribute %q has a bad percent-encoding", name)
	}
	return name, value, nil
}

func validAttrName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// pathStrings and queryStrings are the attributes taken as they are, by
// the field each sets.
var pathStrings = map[string]func(*URI) *string{
	"token":                func(u *URI) *string { return &u.Token },
	"manufacturer":         func(u *URI) *string { return &u.Manufacturer },
	"serial":               func(u *URI) *string { return &u.Serial },
	"model":                func(u *URI) *string { return &u.Model },
	"library-manufacturer": func(u *URI) *string { return &u.LibraryManufacturer },
	"library-description":  func(u *URI) *string { return &u.LibraryDescription },
	"slot-description":     func(u *URI) *string { return &u.SlotDescription },
	"slot-manufacturer":    func(u *URI) *string { return &u.SlotManufacturer },
	"object":               func(u *URI) *string { return &u.Object },
}

var queryStrings = map[string]func(*URI) *string{
	"pin-value":   func(u *URI) *string { return &u.pinValue },
	"pin-source":  func(u *URI) *string { return &u.PINSource },
	"module-path": func(u *URI) *string { return &u.ModulePath },
	"module-name": func(u *URI) *string { return &u.ModuleName },
}

func (u *URI) setPathAttr(attr string, seen map[string]bool) error {
	name, v, err := splitAttr(attr, "path", seen)
	if err != nil {
		return err
	}
	if field, ok := pathStrings[name]; ok {
		*field(u) = v
		return nil
	}
	switch name {
	case "library-version":
		if !validLibraryVersion(v) {
			return fault.New(fault.InvalidArgs, "PKCS#11 URI library-version %q is not \"major\" or \"major.minor\"", v)
		}
		u.LibraryVersion = v
	case "slot-id":
		n, err := strconv.ParseUint(v, 10, strconv.IntSize)
		if err != nil || !allDigits(v) {
			return fault.New(fault.InvalidArgs, "PKCS#11 URI slot-id %q is not a decimal integer", v)
		}
		u.SlotID, u.HasSlotID = uint(n), true
	case "id":
		if v != "" {
			u.ID = []byte(v)
		}
	case "type":
		if !pkcs11ObjectTypes[v] {
			return fault.New(fault.InvalidArgs, "PKCS#11 URI type %q is not one of private, public, secret-key, cert, data", v)
		}
		u.Type = v
	default:
		if isVendorAttr(name) {
			return nil
		}
		if isQueryAttr(name) {
			return fault.New(fault.InvalidArgs, "PKCS#11 URI attribute %q belongs in the query, after \"?\"", name)
		}
		return fault.New(fault.InvalidArgs, "PKCS#11 URI has unknown path attribute %q", name)
	}
	return nil
}

func (u *URI) setQueryAttr(attr string, seen map[string]bool) error {
	name, v, err := splitAttr(attr, "query", seen)
	if err != nil {
		return err
	}
	if field, ok := queryStrings[name]; ok {
		*field(u) = v
		return nil
	}
	if isVendorAttr(name) {
		return nil
	}
	return fault.New(fault.InvalidArgs, "PKCS#11 URI has unknown query attribute %q", name)
}

func isVendorAttr(name string) bool { return strings.HasPrefix(name, "x-") }

func isQueryAttr(name string) bool { return queryStrings[name] != nil }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validLibraryVersion(v string) bool {
	major, minor, hasMinor := strings.Cut(v, ".")
	if !allDigits(major) || len(major) > 3 {
		return false
	}
	return !hasMinor || (allDigits(minor) && len(minor) <= 3)
}

// LibraryVersionNumbers returns the major and minor numbers of
// LibraryVersion ("2" means 2.0); ok is false when it is absent.
func (u *URI) LibraryVersionNumbers() (major, minor byte, ok bool) {
	if u.LibraryVersion == "" {
		return 0, 0, false
	}
	ma, mi, _ := strings.Cut(u.LibraryVersion, ".")
	a, err := strconv.ParseUint(ma, 10, 8)
	if err != nil {
		return 0, 0, false
	}
	var b uint64
	if mi != "" {
		if b, err = strconv.ParseUint(mi, 10, 8); err != nil {
			return 0, 0, false
		}
	}
	return byte(a), byte(b), true
}

func pctDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadPct
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", errBadPct
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

var errBadPct = errors.New("bad percent-encoding")

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// pctEncode escapes everything but RFC 3986 unreserved characters and the
// bytes in keep.
func pctEncode(s, keep string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func pctEncodeAll(p []byte) string {
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, 3*len(p))
	for _, c := range p {
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

// String renders the URI without pin-value, so it is safe for logs and the
// Location property. Parsing the result gives back the same URI minus the PIN.
func (u *URI) String() string {
	if u == nil {
		return "<nil>"
	}
	const pathKeep = ":@!$'()*+,"
	const queryKeep = ":@!$'()*+,/"
	var path, query []string
	// adder appends name=v (escaped, keeping keep) to *list when v is set.
	adder := func(list *[]string, keep string) func(name, v string) {
		return func(name, v string) {
			if v != "" {
				*list = append(*list, name+"="+pctEncode(v, keep))
			}
		}
	}
	add, addQ := adder(&path, pathKeep), adder(&query, queryKeep)
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("serial", u.Serial)
	add("model", u.Model)
	add("library-manufacturer", u.LibraryManufacturer)
	add("library-description", u.LibraryDescription)
	add("library-version", u.LibraryVersion)
	if u.HasSlotID {
		path = append(path, "slot-id="+strconv.FormatUint(uint64(u.SlotID), 10))
	}
	add("slot-description", u.SlotDescription)
	add("slot-manufacturer", u.SlotManufacturer)
	add("object", u.Object)
	if len(u.ID) > 0 {
		path = append(path, "id="+pctEncodeAll(u.ID))
	}
	add("type", u.Type)

	addQ("pin-source", u.PINSource)
	addQ("module-name", u.ModuleName)
	addQ("module-path", u.ModulePath)

	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// GoString keeps %#v from printing the PIN.
func (u *URI) GoString() string { return "keys.PKCS11URI(" + strconv.Quote(u.String()) + ")" }

// HasPIN reports whether the URI carries a pin-value or a pin-source.
func (u *URI) HasPIN() bool { return u.pinValue != "" || u.PINSource != "" }

// WithoutObject returns a copy that names only the token (and library),
// e.g. to describe the token a key lives on.
func (u *URI) WithoutObject() *URI {
	c := *u
	c.Object, c.ID, c.Type = "", nil, ""
	return &c
}

// PIN returns the user PIN: pin-value, or the contents of the pin-source
// (a path, a file: URI, or credential:NAME -- a systemd credential in
// $CREDENTIALS_DIRECTORY) with trailing newlines trimmed. It returns
// "" and no error when the URI carries neither.
func (u *URI) PIN() (string, error) {
	if u.pinValue != "" || u.PINSource == "" {
		return u.pinValue, nil
	}
	if name, ok, err := credential.Ref(u.PINSource); ok {
		if err != nil {
			return "", fault.New(fault.InvalidArgs, "pin-source: %s", fault.Message(err))
		}
		return credential.ReadString(name) // errors name the credential, never the PIN
	}
	path, err := u.PINSourcePath()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		kind := fault.Unavailable
		if os.IsNotExist(err) {
			kind = fault.NotFound
		}
		// err names only the path; the PIN was never read.
		return "", fault.Wrap(kind, err, "read pin-source %q: %v", path, errText(err))
	}
	pin := strings.TrimRight(string(b), "\r\n")
	if pin == "" {
		return "", fault.New(fault.InvalidArgs, "pin-source %q is empty", path)
	}
	return pin, nil
}

// PINSourcePath checks the pin-source attribute without reading it and
// returns the absolute file path it names ("" when there is none, or
// when it names a systemd credential), so a
// configuration can be refused before anything is started.
func (u *URI) PINSourcePath() (string, error) {
	if u.PINSource == "" {
		return "", nil
	}
	if _, ok, err := credential.Ref(u.PINSource); ok {
		// A systemd credential: no file path; the name is checked here.
		if err != nil {
			return "", fault.New(fault.InvalidArgs, "pin-source: %s", fault.Message(err))
		}
		return "", nil
	}
	path := u.PINSource
	if len(path) >= 5 && strings.EqualFold(path[:5], "file:") {
		fu, err := url.Parse(path)
		if err != nil || (fu.Host != "" && fu.Host != "localhost") || fu.Path == "" || fu.Opaque != "" {
			return "", fault.New(fault.InvalidArgs, "pin-source is not a local file: URI such as file:///etc/edgev2/pin (not shown: it may be the PIN itself)")
		}
		path = fu.Path
	}
	if !strings.HasPrefix(path, "/") {
		// Not echoed: a value that is no path may be the PIN itself.
		return "", fault.New(fault.InvalidArgs, "pin-source is not an absolute path (not shown: it may be the PIN itself)")
	}
	return path, nil
}

// errText returns the operating-system part of a file error ("permission denied").
func errText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// InlinePIN returns the pin-value the URI carries ("" for none), for
// `edgectl config apply`, which moves it into a sealed credential.
func (u *URI) InlinePIN() string { return u.pinValue }

// WithPINSource returns a copy whose PIN comes from src (a pin-source
// value such as "credential:edgev2.keyd.pin") instead of a pin-value.
func (u *URI) WithPINSource(src string) *URI {
	c := *u
	c.pinValue, c.PINSource = "", src
	return &c
}
