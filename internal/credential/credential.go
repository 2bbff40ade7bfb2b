// Package credential reads the secrets systemd hands a service
// (LoadCredentialEncrypted= into $CREDENTIALS_DIRECTORY) and names where
// `edgectl config apply` keeps them sealed.
package credential

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgev2/edgev2/fault"
)

// Scheme prefixes a credential reference where a file path may also be
// given (pin-source=credential:edgev2.keyd.pin).
const Scheme = "credential:"

// StoreDir is where apply writes sealed credentials (systemd's own search
// directory for LoadCredentialEncrypted=); ClearStoreDir holds unsealed
// ones (seal = "none").
const (
	StoreDir      = "/etc/credstore.encrypted"
	ClearStoreDir = "/etc/credstore"
)

// maxSize bounds what a daemon reads: PINs, passwords, keys, connection
// strings are all far smaller.
const maxSize = 64 << 10

// ValidName checks a credential name: a single file name (systemd's rule),
// so a name from a config file can never reach outside the credentials
// directory.
func ValidName(name string) error {
	switch {
	case name == "":
		return fault.New(fault.InvalidArgs, "credential name is empty")
	case len(name) > 255:
		return fault.New(fault.InvalidArgs, "credential name is longer than 255 bytes")
	case name == "." || name == ".." || strings.Contains(name, ".."):
		return fault.New(fault.InvalidArgs, "credential name %q contains \"..\"", name)
	case strings.ContainsRune(name, '/'):
		return fault.New(fault.InvalidArgs, "credential name %q contains '/'", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x21 || c == 0x7f || c == '\\' || c == ':' {
			return fault.New(fault.InvalidArgs, "credential name %q contains a space, control character, ':' or '\\'", name)
		}
	}
	return nil
}

// Unit is the systemd unit of an edgev2 credential name
// ("edgev2.keyd.pin" -> "edgev2-keyd.service"), "" for another name.
func Unit(name string) string {
	rest, ok := strings.CutPrefix(name, "edgev2.")
	if !ok {
		return ""
	}
	svc, _, ok := strings.Cut(rest, ".")
	if !ok || svc == "" {
		return ""
	}
	return "edgev2-" + svc + ".service"
}

// UnitLine is the line a unit needs to receive the sealed credential name.
func UnitLine(name string) string {
	return "LoadCredentialEncrypted=" + UnitEscape(name) + ":" + UnitEscape(StoreDir+"/"+name)
}

// UnitEscape escapes s for a unit file setting that expands '%'
// specifiers: a name from a key id may hold '%'.
func UnitEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// Path returns where the running service finds credential name, without
// reading it. Errors name the credential and the unit line it needs.
func Path(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || !filepath.IsAbs(dir) {
		return "", fault.New(fault.Unavailable, "credential %q: $CREDENTIALS_DIRECTORY is not set: the service must run under systemd with %s", name, need(name))
	}
	return filepath.Join(dir, name), nil
}

func need(name string) string {
	s := "`" + UnitLine(name) + "`"
	if u := Unit(name); u != "" {
		s += " in " + u + " (`edgectl config apply` writes it in /etc/systemd/system/" + u + ".d/50-credentials.conf; then `systemctl daemon-reload`)"
	}
	return s
}

// Read returns the contents of credential name. The error never holds the
// contents.
func Read(name string) ([]byte, error) {
	path, err := Path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fault.New(fault.NotFound, "credential %q is not in $CREDENTIALS_DIRECTORY (%s): the unit needs %s", name, filepath.Dir(path), need(name))
		}
		return nil, fault.Wrap(fault.Unavailable, err, "credential %q: %v", name, errText(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "credential %q: %v", name, errText(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fault.New(fault.InvalidArgs, "credential %q is not a regular file", name)
	}
	if st.Size() > maxSize {
		return nil, fault.New(fault.InvalidArgs, "credential %q is larger than %d bytes", name, maxSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "credential %q: %v", name, errText(err))
	}
	if len(b) > maxSize {
		return nil, fault.New(fault.InvalidArgs, "credential %q is larger than %d bytes", name, maxSize)
	}
	if len(b) == 0 {
		return nil, fault.New(fault.InvalidArgs, "credential %q is empty", name)
	}
	return b, nil
}

// ReadString is Read for text secrets (PINs, passwords): trailing newlines
// are trimmed, as from a pin-source file.
func ReadString(name string) (string, error) {
	b, err := Read(name)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fault.New(fault.InvalidArgs, "credential %q is empty", name)
	}
	return s, nil
}

// Ref parses "credential:NAME"; ok is false when s is not a credential
// reference at all.
func Ref(s string) (name string, ok bool, err error) {
	name, ok = strings.CutPrefix(s, Scheme)
	if !ok {
		return "", false, nil
	}
	if err := ValidName(name); err != nil {
		return "", true, err
	}
	return name, true, nil
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return fmt.Sprint(err)
}
