package mgmt

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/edgev2/edgev2/modrt/ctrd"
	"github.com/edgev2/edgev2/modrt/logstore"
)

func TestLogsPassDockerFramingThrough(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	stream := append(frame(logstore.StreamStdout, "hello\n"), frame(logstore.StreamStderr, "oops\n")...)
	stream = append(stream, frame(logstore.StreamStdout, string(bytes.Repeat([]byte{0, 0xff, '\n'}, 20000)))...)
	e.mods.logData = stream
	r := e.want(e.do("GET", v("/modules/m/logs")+"&tail=100&since=1551885923&until=2024-05-01T00:00:00Z&timestamps=true", ""), 200)
	if !bytes.Equal(r.body, stream) {
		t.Fatalf("body differs from the runtime's stream (%d vs %d bytes)", len(r.body), len(stream))
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q", ct)
	}
	frames, err := logstore.ParseFrames(bytes.NewReader(r.body))
	if err != nil || len(frames) != 3 || frames[1].Stream != logstore.StreamStderr {
		t.Errorf("frames %v, %v", frames, err)
	}
	o := e.mods.logOpts
	if o.Tail != 100 || o.Follow || !o.Timestamps || !o.Since.Equal(time.Unix(1551885923, 0)) ||
		!o.Until.Equal(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("options %+v", o)
	}
	e.want(e.do("GET", v("/modules/m/logs"), ""), 200)
	if o := e.mods.logOpts; o.Tail != -1 || !o.Since.IsZero() || !o.Until.IsZero() || o.Follow || o.Timestamps {
		t.Errorf("default options %+v", o)
	}
}

func TestLogsRejectBadOptions(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	for _, q := range []string{"tail=-1", "tail=ten", "follow=yes please", "timestamps=2", "since=yesterday", "until=5 fortnights", "since=1e300"} {
		r := e.want(e.do("GET", v("/modules/m/logs")+"&"+url.PathEscape(q), ""), 400)
		t.Logf("%s: %s", q, r.message())
	}
	e.want(e.do("GET", v("/modules/nothere/logs"), ""), 404)
}

// A follower is streamed frame by frame, and hanging up closes the
// runtime's reader.
func TestLogsFollowStreamsAndStopsWhenTheCallerLeaves(t *testing.T) {
	e := newEnv(t, asAgent, false)
	e.mods.add(ctrd.Status{Name: "m", State: ctrd.StateRunning}, nil)
	pr, pw := io.Pipe()
	e.mods.follow = pr
	req, _ := http.NewRequest("GET", "http://mgmt"+v("/modules/m/logs")+"&follow=true", nil)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := frame(logstore.StreamStdout, "line 1\n")
	go pw.Write(first)
	got := make([]byte, len(first))
	if _, err := io.ReadFull(res.Body, got); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("first frame %q, %v", got, err)
	}
	if !e.mods.logOpts.Follow {
		t.Error("follow not passed on")
	}
	res.Body.Close()
	e.client.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := pw.Write(frame(logstore.StreamStdout, "more\n")); err != nil {
				done <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	select {
	case err := <-done:
		if err != io.ErrClosedPipe {
			t.Errorf("writer got %v, want the reader closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runtime's reader was not closed after the caller left")
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"0", time.Time{}},
		{"-5", time.Time{}},
		{"1551885923", time.Unix(1551885923, 0)},
		{"1551885923.5", time.Unix(1551885923, 5e8)},
		{"2024-04-30T10:00:00+02:00", time.Date(2024, 4, 30, 8, 0, 0, 0, time.UTC)},
		{"1d", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"1 day", now.Add(-24 * time.Hour)},
		{"2 days 3 hours 2 minutes", now.Add(-(51*time.Hour + 2*time.Minute))},
		{"10s", now.Add(-10 * time.Second)},
	} {
		got, err := parseSince(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "d", "1 fortnight", "yesterday", "1d 2", "99999999999999999999h", "1e400"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) accepted", in)
		}
	}
}
