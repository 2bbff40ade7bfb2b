package dbus

import (
	"context"
	"strings"

	godbus "github.com/godbus/dbus/v5"
)

// Signals of a Server are not broadcast: a broadcast reaches every peer
// with a match rule, and a match rule needs no authorization. Each signal
// goes instead as a unicast copy (Destination set) to every peer on the bus
// that may read the object it is about, decided per peer through polkit
// (the Authorizer's cache, so polkit's Changed revokes at once) and
// re-decided for every signal. dbus-daemon and dbus-broker both deliver a
// unicast signal to its destination whether or not it has a match rule, and
// to nobody else (eavesdropping needs a bus policy that allows it; the
// system bus allows it to nobody, monitoring only to root).
//
// The audience is every peer the bus has, not only those that subscribed:
// a service cannot see match rules, and taking every peer keeps plain
// AddMatch listeners (edgectl, the other services, gdbus monitor) working
// across restarts of either side without a subscription protocol.

// signalQueueLen bounds the signals waiting for delivery. A full queue
// drops the newest signal with a warning rather than blocking the method
// call or supervisor that caused it.
const signalQueueLen = 1024

type outSignal struct {
	path godbus.ObjectPath
	name string
	args []any
	// id is the entity the signal reveals ("" for the root object).
	id string
	// also is a peer that receives the signal whatever its authorization
	// (the caller whose call produced it, e.g. PullImage's progress).
	also string
}

// Emit sends a signal about the object at path to the peers that may read
// that object (see the package comment on signals). It returns at once;
// each peer receives the server's signals in the order they were emitted
// (peers are served independently, so a slow authorization delays only
// its own peer).
func (s *Server) Emit(path godbus.ObjectPath, name string, args ...any) {
	s.enqueue(outSignal{path: path, name: name, args: args, id: s.entityOf(path)})
}

// EmitAlso is Emit with caller added to the audience: the signal reports
// on a call caller made, which it was authorized for.
func (s *Server) EmitAlso(caller string, path godbus.ObjectPath, name string, args ...any) {
	s.enqueue(outSignal{path: path, name: name, args: args, id: s.entityOf(path), also: caller})
}

// entityOf is the id a signal's path names, "" for the root or a path the
// server does not serve (which only readers of the root may hear about).
func (s *Server) entityOf(path godbus.ObjectPath) string {
	if c, id, ok := s.resolve(path); ok && c != nil {
		return id
	}
	return ""
}

func (s *Server) enqueue(sig outSignal) {
	select {
	case s.signals <- sig:
	default:
		s.log.Warn("signal queue full; dropping signal", "signal", sig.name, "path", sig.path)
	}
}

// signalBatch is how many queued signals share one look at the bus's peers.
const signalBatch = 64

// signalDeciders bounds the peers whose signals are being decided and sent
// at once: each may wait on a polkit round trip.
const signalDeciders = 16

// deliverSignals serves the signal queue until the bus connection closes.
func (s *Server) deliverSignals(ctx context.Context) {
	batch := make([]outSignal, 0, signalBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-s.signals:
			batch = append(batch[:0], sig)
		}
	more:
		for len(batch) < signalBatch {
			select {
			case sig := <-s.signals:
				batch = append(batch, sig)
			default:
				break more
			}
		}
		s.deliver(ctx, batch)
	}
}

// deliver hands a batch to each peer's queue. Each peer's signals are
// decided and sent in order by a worker of its own, so a peer whose
// authorization is slow (a polkit round trip per new entity, polkitd busy)
// delays only its own signals: before, one loop decided peer after peer,
// and a root listener waited behind every other peer's polkit check for
// every signal about a new id (the ManageKeys "no InterfacesAdded" flake
// under load).
func (s *Server) deliver(ctx context.Context, batch []outSignal) {
	if s.CanRead == nil && s.CanReceive == nil {
		for _, sig := range batch {
			s.broadcast(sig)
		}
		return
	}
	peers, err := s.peers()
	if err != nil {
		s.log.Warn("list bus peers for signals; not sent", "signals", len(batch), "err", err)
		return
	}
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	if s.peerQueues == nil {
		s.peerQueues = map[string][]outSignal{}
		s.deciders = make(chan struct{}, signalDeciders)
	}
	for _, p := range peers {
		q, running := s.peerQueues[p]
		if n := len(q) + len(batch) - signalQueueLen; n > 0 {
			// The peer's decisions have fallen a whole queue behind:
			// its oldest signals go, the rest of the bus is not held up.
			s.log.Warn("signals to a peer waiting for authorization; dropping its oldest", "peer", p, "dropped", min(n, len(q)))
			q = q[min(n, len(q)):]
		}
		s.peerQueues[p] = append(q, batch...)
		if !running {
			go s.servePeer(ctx, p)
		}
	}
}

// servePeer decides and sends peer's queued signals, in order, until its
// queue is empty or the connection closes.
func (s *Server) servePeer(ctx context.Context, peer string) {
	for {
		s.peerMu.Lock()
		q := s.peerQueues[peer]
		if len(q) == 0 || ctx.Err() != nil {
			delete(s.peerQueues, peer)
			s.peerMu.Unlock()
			return
		}
		s.peerQueues[peer] = nil // taken; still present: this worker runs
		s.peerMu.Unlock()
		select {
		case s.deciders <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		for _, sig := range q {
			if peer == sig.also || s.receives(peer, sig) {
				s.unicast(peer, sig)
			}
		}
		<-s.deciders
	}
}

// receives decides whether peer may receive sig: CanReceive if set, else
// CanRead for a non-interactive call from peer.
func (s *Server) receives(peer string, sig outSignal) bool {
	if s.CanReceive != nil {
		return s.CanReceive(peer, sig.id)
	}
	return s.CanRead(Call{Sender: peer, Path: sig.path}, sig.id) == nil
}

// peers are the unique names on the bus other than ours.
func (s *Server) peers() ([]string, error) {
	var names []string
	if err := s.conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		return nil, err
	}
	self := ""
	if n := s.conn.Names(); len(n) > 0 {
		self = n[0]
	}
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, ":") && n != self {
			out = append(out, n)
		}
	}
	return out, nil
}

func signalMessage(sig outSignal) *godbus.Message {
	i := strings.LastIndex(sig.name, ".")
	msg := &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(sig.path),
		godbus.FieldInterface: godbus.MakeVariant(sig.name[:max(i, 0)]),
		godbus.FieldMember:    godbus.MakeVariant(sig.name[i+1:]),
	}, Body: sig.args}
	if len(sig.args) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(sig.args...))
	}
	return msg
}

func (s *Server) unicast(peer string, sig outSignal) {
	msg := signalMessage(sig)
	msg.Headers[godbus.FieldDestination] = godbus.MakeVariant(peer)
	if call := s.conn.Send(msg, nil); call.Err != nil {
		s.log.Warn("send signal", "signal", sig.name, "path", sig.path, "to", peer, "err", call.Err)
	}
}

func (s *Server) broadcast(sig outSignal) {
	if err := s.conn.Emit(sig.path, sig.name, sig.args...); err != nil {
		s.log.Warn("emit signal", "signal", sig.name, "path", sig.path, "err", err)
	}
}

// MayReceive reports whether bus peer may receive signals about what action
// protects on the object details names. An Authority that can cache a
// polkit challenge as a refusal (the Authorizer's Permits) is asked that
// way, so a peer in an active session costs one polkit round trip and not
// one per signal; any other Authority through Authorize.
func MayReceive(ctx context.Context, auth Authority, peer, action string, details map[string]string) bool {
	if p, ok := auth.(interface {
		Permits(ctx context.Context, peer, action string, details map[string]string) bool
	}); ok {
		return p.Permits(ctx, peer, action, details)
	}
	return auth.Authorize(ctx, Call{Sender: peer}, action, details) == nil
}
