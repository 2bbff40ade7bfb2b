package logstore

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, l *Log, opts Options) []Frame {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(l.Copy(t.Context(), pw, opts, Follow{Ended: func() bool { return true }, Now: time.Now, Stop: make(chan struct{})}))
	}()
	frames, err := ParseFrames(pr)
	if err != nil {
		t.Fatalf("parse frames: %v", err)
	}
	return frames
}

func TestChattyOutputIsCappedByRotation(t *testing.T) {
	dir := t.TempDir()
	const maxBytes, files = 8 << 10, 3
	l, err := Open(dir, maxBytes, files, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := NewLineWriter(StreamStdout, l)
	for i := range 20000 { // ~600 KiB, far over the 24 KiB cap
		fmt.Fprintf(w, "line %06d of chatty output\n", i)
	}
	total, n, err := DiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if total > maxBytes*files || n > files {
		t.Fatalf("logs use %d bytes in %d files, cap is %d bytes in %d files", total, n, maxBytes*files, files)
	}
	frames := readAll(t, l, Options{Tail: 3})
	want := []string{"line 019997 of chatty output\n", "line 019998 of chatty output\n", "line 019999 of chatty output\n"}
	if len(frames) != 3 {
		t.Fatalf("tail 3 gave %d frames", len(frames))
	}
	for i, f := range frames {
		if string(f.Payload) != want[i] || f.Stream != StreamStdout {
			t.Fatalf("frame %d = %d %q, want stdout %q", i, f.Stream, f.Payload, want[i])
		}
	}
	// Everything kept is in order, without gaps, ending with the last line.
	all := readAll(t, l, Options{Tail: -1})
	first := 0
	fmt.Sscanf(string(all[0].Payload), "line %d", &first)
	for i, f := range all {
		if want := fmt.Sprintf("line %06d of chatty output\n", first+i); string(f.Payload) != want {
			t.Fatalf("record %d = %q, want %q", i, f.Payload, want)
		}
	}
	if first+len(all) != 20000 {
		t.Fatalf("kept lines %d..%d, want to end at 19999", first, first+len(all)-1)
	}
}

func TestLongLinesAreChunkedAndPartialLinesFlushed(t *testing.T) {
	l, err := Open(t.TempDir(), 1<<20, 2, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := NewLineWriter(StreamStderr, l)
	long := strings.Repeat("x", maxLineChunk+10) + "\n"
	w.Write([]byte(long[:100]))
	w.Write([]byte(long[100:]))
	w.Write([]byte("no newline at end"))
	w.Flush()
	frames := readAll(t, l, Options{Tail: -1})
	var got []string
	for _, f := range frames {
		got = append(got, string(f.Payload))
	}
	want := []string{long[:maxLineChunk], long[maxLineChunk:], "no newline at end"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("records = %d of lengths %v, want the line cut at %d bytes plus the partial tail", len(got), lens(got), maxLineChunk)
	}
}

func lens(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}

func TestTornLastRecordIsCutOnReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, 1<<20, 2, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(StreamStdout, []byte("whole\n"))
	l.Close()
	f, err := os.OpenFile(filepath.Join(dir, fileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(appendRecord(nil, record{stream: StreamStdout, at: time.Now(), data: []byte("torn record\n")})[:20])
	f.Close()
	l, err = Open(dir, 1<<20, 2, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Append(StreamStdout, []byte("after\n"))
	frames := readAll(t, l, Options{Tail: -1})
	var got bytes.Buffer
	for _, f := range frames {
		got.Write(f.Payload)
	}
	if got.String() != "whole\nafter\n" {
		t.Fatalf("after a torn write the log reads %q, want the whole records only", got.String())
	}
}

func TestSinceUntilAndTimestampsSelectAndPrefix(t *testing.T) {
	clock := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	now := func() time.Time { return clock }
	l, err := Open(t.TempDir(), 1<<20, 2, now)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 5 {
		clock = clock.Add(time.Second)
		l.Append(StreamStdout, fmt.Appendf(nil, "%d\n", i))
	}
	start := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	frames := readAll(t, l, Options{Tail: -1, Since: start.Add(2 * time.Second), Until: start.Add(4 * time.Second), Timestamps: true})
	want := []string{
		"2025-01-02T03:04:07.0000006Z 1\n",
		"2025-01-02T03:04:08.0000006Z 2\n",
		"2025-01-02T03:04:09.0000006Z 3\n",
	}
	if len(frames) != len(want) {
		t.Fatalf("got %d frames, want %d", len(frames), len(want))
	}
	for i, f := range frames {
		if string(f.Payload) != want[i] {
			t.Fatalf("frame %d = %q, want %q", i, f.Payload, want[i])
		}
	}
}
