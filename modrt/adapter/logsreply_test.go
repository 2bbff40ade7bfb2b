package adapter

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
	"github.com/edgev2/edgev2/internal/testenv"
	rtapi "github.com/edgev2/edgev2/modrt/api"
)

// TestGetLogsClosesItsPipeOnceReplied: by the time the reply carrying the
// pipe's read end has been sent, the runtime holds no copy of it, so once the
// caller closes its own the writer sees a broken pipe (with the runtime's
// copy open, the write would succeed into the pipe's buffer).
func TestGetLogsClosesItsPipeOnceReplied(t *testing.T) {
	testenv.RequireRoot(t)
	b := testenv.StartBus(t)
	l := NewLogsReplier()
	replied := make(chan struct{}, 1)
	l.AfterReply = func() { replied <- struct{}{} }
	server, err := godbus.Connect(b.Address, l.Option())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if err := bus.NewServer(server, rtapi.ObjectPath, nil).Claim(rtapi.BusName); err != nil {
		t.Fatal(err)
	}
	var w *os.File
	l.serve(server, func(godbus.Message, map[string]godbus.Variant) (*os.File, *godbus.Error) {
		r, pw, err := os.Pipe()
		if err != nil {
			t.Error(err)
			return nil, bus.NewError(bus.ErrFailed, err.Error())
		}
		w = pw
		pw.WriteString("one line\n")
		return r, nil
	})

	client := b.Conn(t)
	var fd godbus.UnixFD
	if err := client.Object(rtapi.BusName, bus.ChildPath(rtapi.ObjectPath, rtapi.Collection, "m")).Call(rtapi.ModuleInterface+".GetLogs", 0, map[string]godbus.Variant{}).Store(&fd); err != nil {
		t.Fatalf("GetLogs: %v", err)
	}
	<-replied
	defer w.Close()
	got := make([]byte, 9)
	f := os.NewFile(uintptr(fd), "logs")
	if _, err := io.ReadFull(f, got); err != nil || string(got) != "one line\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	f.Close()
	// dbus-daemon closes the copy it relayed a moment after the client
	// has it: writes fail with EPIPE once it has, unless the runtime
	// still holds a copy (then they never do).
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, err := w.WriteString("more\n")
		return errors.Is(err, syscall.EPIPE)
	}, "writes after the caller closed its end never fail with EPIPE: the runtime still holds a copy")
}
