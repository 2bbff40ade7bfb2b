package cloudhttp

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgev2/edgev2/fault"
)

// MaxReasonLen caps the server text quoted in an error.
const MaxReasonLen = 200

// Sanitize turns untrusted bytes into one printable line of at most max
// runes: invalid UTF-8, controls and whitespace runs become one space, and
// a cut is marked with "...".
func Sanitize(b []byte, max int) string {
	var sb strings.Builder
	n, space := 0, false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			space = sb.Len() > 0
			continue
		}
		if n >= max {
			sb.WriteString("...")
			break
		}
		if space {
			sb.WriteByte(' ')
			n++
			space = false
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}

// Printable is Sanitize of a string for quoting in a message.
func Printable(s string) string { return Sanitize([]byte(s), 130) }

// sigRE finds a SAS signature a server might echo back.
var sigRE = regexp.MustCompile(`(?i)(sig=)[^&\s"]*`)

// Scrub removes anything that looks like a SAS signature, and each of
// secrets (of four bytes or more), from server text.
func Scrub(s string, secrets ...string) string {
	s = sigRE.ReplaceAllString(s, "${1}<redacted>")
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "<redacted>")
		}
	}
	return s
}

// Quote renders server text as a quoted, sanitised, scrubbed string of at
// most MaxReasonLen runes. It scrubs before it cuts, so a cut that falls
// inside a secret leaves no part of it.
func Quote(b []byte, secrets ...string) string {
	return strconv.Quote(Scrub(Sanitize([]byte(Scrub(string(b), secrets...)), MaxReasonLen), secrets...))
}

// IsMediaType reports whether the Content-Type of h parses as mt.
func IsMediaType(h http.Header, mt string) bool {
	got, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && got == mt
}

// TextReason renders a text/plain error body as ": <who> says "..."", or
// "" when the body is empty, not text/plain, or has nothing printable.
func TextReason(who string, r *Response, secrets ...string) string {
	body := bytes.TrimSpace(r.Body)
	if len(body) == 0 || !IsMediaType(r.Header, "text/plain") {
		return ""
	}
	if Sanitize(body, MaxReasonLen) == "" {
		return ""
	}
	return ": " + who + " says " + Quote(body, secrets...)
}

// ContentTypeHint is ` (Content-Type "...")` when a response that should
// be JSON says it is something else, or "".
func ContentTypeHint(h http.Header) string {
	ct := h.Get("Content-Type")
	if ct == "" || IsMediaType(h, "application/json") {
		return ""
	}
	return fmt.Sprintf(" (Content-Type %q)", Sanitize([]byte(ct), 60))
}

// CheckMediaType checks Content-Type against want, ignoring parameters and
// case; the error says what was sent instead.
func CheckMediaType(h http.Header, want ...string) error {
	ct := h.Get("Content-Type")
	if ct == "" {
		return fault.New(fault.InvalidArgs, "no Content-Type (want %s)", want[0])
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fault.New(fault.InvalidArgs, "malformed Content-Type %q", Sanitize([]byte(ct), 80))
	}
	for _, w := range want {
		if mt == w {
			return nil
		}
	}
	return fault.New(fault.InvalidArgs, "Content-Type is %q, want %s", Sanitize([]byte(mt), 80), want[0])
}

// RetryAfter reads Retry-After (delta-seconds or HTTP-date), falling back
// to def when it is missing or unusable, and clamps it to [lo, hi]. An
// HTTP-date is measured against the response's Date when present, so clock
// skew between device and server does not stretch or shrink the wait.
func RetryAfter(h http.Header, now time.Time, def, lo, hi time.Duration) time.Duration {
	d := def
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v != "" && strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(hi/time.Second) {
			d = hi // too many digits is still "a long time"
		} else {
			d = time.Duration(secs) * time.Second
		}
	} else if at, err := http.ParseTime(v); err == nil {
		if date, err := http.ParseTime(h.Get("Date")); err == nil {
			now = date
		}
		d = at.Sub(now)
	}
	return min(max(d, lo), hi)
}
