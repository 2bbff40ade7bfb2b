package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/fault"
	rtapi "github.com/edgev2/edgev2/modrt/api"
	"github.com/edgev2/edgev2/modrt/client"
)

func runImages(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return subcommands(ctx, "images", args, stdout, stderr, map[string]func(context.Context, *cli, []string) int{
		"pull": imagesPull, "import": imagesImport,
	})
}

func imagesPull(ctx context.Context, c *cli, args []string) int {
	fs := c.flags()
	user := fs.String("username", "", "registry user name")
	passFile := fs.String("password-file", "", "file holding the registry password (never on the command line)")
	rest, code := c.parse(fs, args, 1, 1, "REF [--username U --password-file FILE] [--json]")
	if code >= 0 {
		return code
	}
	var auth *client.PullAuth
	if *user != "" {
		if *passFile == "" {
			return c.usageError("edgectl images pull: --username needs --password-file (passwords never go on the command line)")
		}
		b, err := os.ReadFile(*passFile)
		if err != nil {
			return c.fail(fault.Wrap(fault.InvalidArgs, err, "read the password file: %v", err))
		}
		auth = &client.PullAuth{Username: *user, Password: strings.TrimRight(string(b), "\r\n")}
	}
	mc, code := modulesClient(c, rtapi.ActionManage)
	if code >= 0 {
		return code
	}
	ref := rest[0]
	bar := newProgress(c.stderr, ref)
	digest, err := mc.PullImage(ctx, ref, auth, bar.update)
	bar.finish(err == nil)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.emit(map[string]any{"ref": ref, "digest": digest, "bytes": bar.last.Done})
	}
	fmt.Fprintf(c.stdout, "%s pulled: %s\n", ref, digest)
	return exitOK
}

func imagesImport(ctx context.Context, c *cli, args []string) int {
	rest, code := c.parse(c.flags(), args, 1, 1, "ARCHIVE.tar [--json]")
	if code >= 0 {
		return code
	}
	f, err := os.Open(rest[0])
	if err != nil {
		return c.fail(fault.Wrap(fault.InvalidArgs, err, "open the image archive: %v", err))
	}
	defer f.Close()
	mc, code := modulesClient(c, rtapi.ActionManage)
	if code >= 0 {
		return code
	}
	names, err := mc.ImportImage(ctx, f)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.emit(map[string]any{"archive": rest[0], "images": names})
	}
	for _, n := range names {
		fmt.Fprintf(c.stdout, "imported %s\n", n)
	}
	return exitOK
}

// progress renders PullProgress: a redrawn bar on a terminal, a plain line
// per signal otherwise (logs, pipes, CI).
type progress struct {
	w     io.Writer
	ref   string
	tty   bool
	last  client.Progress
	lines int
}

func newProgress(w io.Writer, ref string) *progress {
	p := &progress{w: w, ref: ref}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

const barWidth = 30

func (p *progress) update(pr client.Progress) {
	p.last = pr
	p.lines++
	if !p.tty {
		fmt.Fprintf(p.w, "pull %s: %s of %s\n", p.ref, humanBytes(pr.Done), humanBytes(pr.Total))
		return
	}
	fmt.Fprintf(p.w, "\r%s %s %s / %s ", p.ref, bar(pr.Done, pr.Total), humanBytes(pr.Done), humanBytes(pr.Total))
}

func (p *progress) finish(ok bool) {
	if p.tty && p.lines > 0 {
		fmt.Fprintln(p.w)
	}
}

// bar draws [=====>    ] for done of total.
func bar(done, total uint64) string {
	n := 0
	if total > 0 {
		n = int(min(done, total) * barWidth / total)
	}
	s := strings.Repeat("=", n)
	if n < barWidth {
		s += ">" + strings.Repeat(" ", barWidth-n-1)
	}
	return "[" + s + "]"
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
