package identity

import (
	"context"
	"os"

	"golang.org/x/sys/unix"

	"github.com/edgev2/edgev2/fault"
)

// The module signer lets the runtime sign module tokens with keyd directly
// (one bus hop instead of two) while identityd stays the authority over
// module identities: identityd opens a Keys session restricted to
// SignDerived on the module-key master and hands it over; per module it
// says which derivations are that module's (ModuleSigning). identityd
// keeps a duplicate of the session's descriptor and shuts the socket down
// whenever a module identity it has described may have changed (a module
// deleted, re-created with a new generation, another device), so no
// derivation the runtime cached before the change can be used after it:
// the runtime's next call fails and it asks again.

// SessionOpener opens Keys sessions restricted to one method on one key.
type SessionOpener interface {
	OpenRestrictedSession(ctx context.Context, method, keyID string) (*os.File, error)
}

// ModuleSigning is what signing a module's tokens with the module signer
// takes: the master key the signer serves, and the derivation of the
// module's primary and secondary keys at its current generation.
type ModuleSigning struct {
	ModuleID, GenerationID string
	KeyID                  string
	Primary, Secondary     []byte
}

// OpenModuleSigner opens a Keys session restricted to SignDerived on the
// module-key master, revoking the one handed out before, and returns it
// and the master's key id. The descriptor is a capability to sign as any
// module of this device: the bus adapter gives it only to the runtime.
func (s *Service) OpenModuleSigner(ctx context.Context) (*os.File, string, error) {
	if s.Sessions == nil {
		return nil, "", fault.New(fault.NotSupported, "this identityd cannot open Keys sessions; sign with SignAsModule")
	}
	if err := s.ensureMaster(ctx); err != nil {
		return nil, "", err
	}
	f, err := s.Sessions.OpenRestrictedSession(ctx, "SignDerived", s.cfg.MasterKey)
	if err != nil {
		return nil, "", fault.Wrap(fault.KindOf(err), err, "open a Keys session for the module signer: %s", fault.Message(err))
	}
	keep, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		f.Close()
		return nil, "", fault.Wrap(fault.Failed, err, "duplicate the module signer's descriptor")
	}
	s.signerMu.Lock()
	old := s.signer
	s.signer = os.NewFile(uintptr(keep), "module-signer")
	s.signerMu.Unlock()
	revoke(old)
	s.log.Info("module signer handed out", "key_id", s.cfg.MasterKey)
	return f, s.cfg.MasterKey, nil
}

// ModuleSigning describes how the module signer signs for moduleID now.
func (s *Service) ModuleSigning(ctx context.Context, moduleID string) (ModuleSigning, error) {
	m, err := s.GetModule(ctx, moduleID)
	if err != nil {
		return ModuleSigning{}, err
	}
	return ModuleSigning{ModuleID: m.ModuleID, GenerationID: m.GenerationID, KeyID: s.cfg.MasterKey,
		Primary: moduleDerivation(m, "primary"), Secondary: moduleDerivation(m, "secondary")}, nil
}

// revokeModuleSigner ends the session handed out, for every holder. Call
// it after the module identities changed (not before: a runtime that asks
// again in between must see the change).
func (s *Service) revokeModuleSigner(why string) {
	s.signerMu.Lock()
	f := s.signer
	s.signer = nil
	s.signerMu.Unlock()
	if f != nil {
		revoke(f)
		s.log.Info("module signer revoked", "why", why)
	}
}

// revoke shuts the socket down (which ends it for every descriptor of
// it, in any process) and closes identityd's own.
func revoke(f *os.File) {
	if f == nil {
		return
	}
	unix.Shutdown(int(f.Fd()), unix.SHUT_RDWR)
	f.Close()
}
