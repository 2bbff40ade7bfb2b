// Package ptool runs tpm2_ptool, tpm2-pkcs11's token tool, with its
// arguments on standard input, so the PINs among them (and the auth values
// it passes on to tpm2-tools) never show in ps.
package ptool

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"

	"github.com/edgev2/edgev2/fault"
)

// shim runs tpm2_ptool's main with its argv read as JSON from standard
// input. tpm2_ptool runs tpm2-tools with authorization values in their
// argv (tpm2_unseal -p is the token's seal auth, a hash of the PIN): the
// shim hands each -p/-P value to the tool in an anonymous file instead
// (memfd; "file:/dev/fd/N", which tpm2-tools read as the value itself).
const shim = `import json, os, sys
sys.argv = ["tpm2_ptool"] + json.loads(sys.stdin.readline())
from tpm2_pkcs11 import tpm2
def popen(cmd, *args, _popen=tpm2.Popen, **kwargs):
    cmd, fds = list(cmd), []
    for i in range(1, len(cmd)):
        v = cmd[i]
        if cmd[i-1] in ("-p", "-P") and v and not v.startswith(("file:", "session:")):
            fd = os.memfd_create("auth")
            os.write(fd, v.encode())
            os.lseek(fd, 0, os.SEEK_SET)
            fds.append(fd)
            cmd[i] = "file:/dev/fd/%d" % fd
    kwargs["pass_fds"] = tuple(kwargs.get("pass_fds", ())) + tuple(fds)
    try:
        return _popen(cmd, *args, **kwargs)
    finally:
        for fd in fds:
            os.close(fd)
tpm2.Popen = popen
from tpm2_pkcs11.tpm2_ptool import main
sys.exit(main())
`

// Command is tpm2_ptool args, run by the Python its #! line names (the one
// its modules are installed for) with args on standard input. The caller
// sets the environment and the outputs. Without tpm2_ptool on PATH it is
// fault.Unavailable.
func Command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	tool, err := exec.LookPath("tpm2_ptool")
	if err != nil {
		return nil, fault.New(fault.Unavailable, "tpm2_ptool is not installed (Debian package libtpm2-pkcs11-tools)")
	}
	argv, _ := json.Marshal(args)
	cmd := exec.CommandContext(ctx, interpreterOf(tool), "-c", shim)
	cmd.Stdin = strings.NewReader(string(argv) + "\n")
	return cmd, nil
}

// interpreterOf returns the Python named by tool's #! line, or python3.
func interpreterOf(tool string) string {
	data, err := os.ReadFile(tool)
	if err != nil {
		return "python3"
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if interp, ok := strings.CutPrefix(line, "#!"); ok {
		if f := strings.Fields(interp); len(f) == 1 && strings.HasPrefix(f[0], "/") {
			return f[0]
		}
	}
	return "python3"
}
