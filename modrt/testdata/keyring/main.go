// Command keyring runs in a module: it looks for a key named by its
// argument in the user keyring of its uid (for root in a module without
// a user namespace: host root's) and prints "KEY <payload>" when it can
// read it, "KEYRING-REFUSED <error>" when it cannot.
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

const (
	keySpecSessionKeyring = ^uintptr(2) // -3
	keySpecUserKeyring    = ^uintptr(3) // -4
	keyctlLink            = 8
	keyctlSearch          = 10
	keyctlRead            = 11
	keyctlJoinSession     = 1
)

func keyctl(args ...uintptr) (uintptr, error) {
	a := make([]uintptr, 5)
	copy(a, args)
	r, _, errno := syscall.Syscall6(syscall.SYS_KEYCTL, a[0], a[1], a[2], a[3], a[4], 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

func main() {
	fail := func(step string, err error) {
		fmt.Printf("KEYRING-REFUSED %s: %v\n", step, err)
		os.Exit(0)
	}
	// A session keyring of its own, then the uid's user keyring linked in:
	// what a session keyring links, the process possesses.
	if _, err := keyctl(keyctlJoinSession, 0); err != nil {
		fail("join a session keyring", err)
	}
	if _, err := keyctl(keyctlLink, keySpecUserKeyring, keySpecSessionKeyring); err != nil {
		fail("link the user keyring", err)
	}
	typ, _ := syscall.BytePtrFromString("user")
	desc, _ := syscall.BytePtrFromString(os.Args[1])
	id, err := keyctl(keyctlSearch, keySpecSessionKeyring, uintptr(unsafe.Pointer(typ)), uintptr(unsafe.Pointer(desc)), 0)
	if err != nil {
		fail("search", err)
	}
	buf := make([]byte, 256)
	n, err := keyctl(keyctlRead, id, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if err != nil {
		fail("read", err)
	}
	fmt.Printf("KEY %s\n", buf[:min(int(n), len(buf))])
}
