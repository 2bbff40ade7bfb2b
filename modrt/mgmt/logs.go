package mgmt

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgev2/edgev2/modrt/logstore"
)

// moduleLogs streams a module's logs in Docker's multiplexed framing
// (8-byte headers) as aziot-edged does: 200, chunked, text/plain.
func (s *Server) moduleLogs(w http.ResponseWriter, r *http.Request, name string) error {
	if err := moduleName(name); err != nil {
		return err
	}
	opts, err := parseLogOptions(r.URL.Query(), time.Now())
	if err != nil {
		return err
	}
	rc, err := s.modules.Logs(name, opts)
	if err != nil {
		return err
	}
	// A follower that hangs up must not keep the reader waiting for output.
	stop := context.AfterFunc(r.Context(), func() { rc.Close() })
	defer stop()
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	rcw := http.NewResponseController(w)
	rcw.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return nil
			}
			rcw.Flush()
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && r.Context().Err() == nil {
				s.log.Warn("module log stream ended early", "module", name, "err", rerr)
			}
			return nil
		}
	}
}

// queryBool reads a boolean query parameter: absent is false, present
// without a value ("?start") is true, as iotedged read it.
func queryBool(q url.Values, key string) (bool, error) {
	if !q.Has(key) {
		return false, nil
	}
	v := q.Get(key)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("invalid parameter: %s must be true or false, not %q", key, v)
	}
	return b, nil
}

// parseLogOptions reads follow, tail, since, until and timestamps as
// aziot-edged does.
func parseLogOptions(q url.Values, now time.Time) (logstore.Options, error) {
	o := logstore.Options{Tail: -1}
	var err error
	if o.Follow, err = queryBool(q, "follow"); err != nil {
		return o, err
	}
	if o.Timestamps, err = queryBool(q, "timestamps"); err != nil {
		return o, err
	}
	if v := q.Get("tail"); v != "" && v != "all" {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil {
			return o, badRequest("invalid parameter: tail must be \"all\" or a number of lines, not %q", v)
		}
		o.Tail = int(n)
	}
	if err := queryTimes(q, now, &o.Since, &o.Until); err != nil {
		return o, err
	}
	return o, nil
}

// queryTimes reads the since and until parameters (parseSince), leaving
// what the query does not set.
func queryTimes(q url.Values, now time.Time, since, until *time.Time) error {
	for _, p := range []struct {
		key string
		dst *time.Time
	}{{"since", since}, {"until", until}} {
		if v := q.Get(p.key); v != "" {
			t, err := parseSince(v, now)
			if err != nil {
				return badRequest("invalid parameter: %s: %v", p.key, err)
			}
			*p.dst = t
		}
	}
	return nil
}

var errSince = errors.New("want a Unix time, an RFC 3339 time or a duration before now (90m, 1 day, 2 days 3 hours)")

// parseSince reads a point in time the way aziot-edged's parse_since does:
// an RFC 3339 time, a Unix time in seconds (0 or less: no bound), or a
// duration before now in humantime's words.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		if f <= 0 {
			return time.Time{}, nil
		}
		if f > 1<<40 {
			return time.Time{}, errSince
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	d, err := parseHumanDuration(s)
	if err != nil {
		return time.Time{}, err
	}
	return now.Add(-d), nil
}

var humanUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "nsec": time.Nanosecond,
	"us": time.Microsecond, "usec": time.Microsecond, "µs": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond, "millis": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
	"M": 2630016 * time.Second, "month": 2630016 * time.Second, "months": 2630016 * time.Second,
	"y": 31557600 * time.Second, "year": 31557600 * time.Second, "years": 31557600 * time.Second,
}

// parseHumanDuration reads "1d", "90m", "1h30m", "2 days 3 hours 2 minutes".
func parseHumanDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, errSince
	}
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 12 {
			return 0, errSince
		}
		n, _ := strconv.ParseInt(rest[:i], 10, 64)
		rest = strings.TrimLeft(rest[i:], " ")
		j := 0
		for j < len(rest) && rest[j] != ' ' && (rest[j] < '0' || rest[j] > '9') {
			j++
		}
		unit, ok := humanUnits[rest[:j]]
		if !ok {
			return 0, errSince
		}
		rest = strings.TrimLeft(rest[j:], " ")
		if n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, errSince
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}
