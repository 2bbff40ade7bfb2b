package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	godbus "github.com/godbus/dbus/v5"

	bus "github.com/edgev2/edgev2/dbus"
)

// ConfigMissing reports whether the daemon's configuration file does not
// exist (the gateway was never configured), as opposed to one that exists
// and is bad (which stays a fatal ExitConfig).
func ConfigMissing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// ServeNotConfigured runs a daemon whose configuration file does not exist
// yet: it owns busName and answers every method call on every object with
// org.edgev2.Error.NotConfigured naming `edgectl config apply`, so a caller
// (or D-Bus activation, which waits for the name) learns it at once instead
// of timing out. `edgectl config apply` restarts it (try-restart) with its
// configuration. It returns the exit code: 0 on SIGTERM.
func ServeNotConfigured(log *slog.Logger, name, busName, configPath string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serveNotConfigured(ctx, log, name, busName, configPath, func(opts ...godbus.ConnOption) (*godbus.Conn, error) {
		return godbus.ConnectSystemBus(opts...)
	})
}

func serveNotConfigured(ctx context.Context, log *slog.Logger, name, busName, configPath string,
	connect func(...godbus.ConnOption) (*godbus.Conn, error)) int {
	msg := fmt.Sprintf("%s is not configured: %s does not exist; write /etc/edgev2/config.toml and run `edgectl config apply`",
		name, configPath)
	conn, err := connect(godbus.WithHandler(notConfigured{bus.NewError(bus.ErrNotConfigured, msg)}))
	if err != nil {
		log.Error("cannot reach the bus", "err", err)
		return ExitFailure
	}
	defer conn.Close()
	reply, err := conn.RequestName(busName, godbus.NameFlagDoNotQueue)
	if err != nil {
		log.Error("cannot claim the bus name", "name", busName, "err", err)
		return ExitFailure
	}
	if reply != godbus.RequestNameReplyPrimaryOwner {
		log.Error("the bus name is taken", "name", busName)
		return ExitFailure
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Warn("not configured: answering every call with "+bus.ErrNotConfigured+" until restarted with a configuration",
		"config", configPath, "fix", "edgectl config apply")
	select {
	case <-ctx.Done():
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		return 0
	case <-conn.Context().Done():
		log.Error("lost the bus connection")
		return ExitFailure
	}
}

// notConfigured is a godbus handler with an object at every path, every
// interface and every method of which fails with err. The arguments are not
// decoded: nothing a caller sends is looked at.
type notConfigured struct{ err *godbus.Error }

func (h notConfigured) LookupObject(godbus.ObjectPath) (godbus.ServerObject, bool) { return h, true }
func (h notConfigured) LookupInterface(string) (godbus.Interface, bool)            { return h, true }
func (h notConfigured) LookupMethod(string) (godbus.Method, bool)                  { return h, true }
func (h notConfigured) Call(...any) ([]any, error)                                 { return nil, h.err }
func (h notConfigured) NumArguments() int                                          { return 0 }
func (h notConfigured) NumReturns() int                                            { return 0 }
func (h notConfigured) ArgumentValue(int) any                                      { return nil }
func (h notConfigured) ReturnValue(int) any                                        { return nil }
func (h notConfigured) DecodeArguments(*godbus.Conn, string, *godbus.Message, []any) ([]any, error) {
	return nil, nil
}
