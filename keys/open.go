package keys

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/edgev2/edgev2/internal/credential"
	"github.com/edgev2/edgev2/keys/config"
)

// Open opens the engine cfg names (the PKCS#11 base token, or the file
// store) and the preloaded keys, and returns the service with the func that
// closes it all. A preloaded key that cannot be loaded is served as
// unavailable (with the reason) rather than stopping every other key. An
// error for which IsConfigProblem holds names the configuration key.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Service, func(), error) {
	var engine Engine
	var p11 *PKCS11Engine
	var err error
	if cfg.PKCS11BaseSlot != "" {
		p11, err = OpenPKCS11(ctx, PKCS11Config{LibPath: cfg.PKCS11LibPath, BaseSlot: cfg.PKCS11BaseSlot, PoolSize: cfg.PKCS11Sessions, Logger: log})
		if err != nil {
			if IsConfigProblem(err) {
				return nil, nil, asConfigProblem(fmt.Errorf("pkcs11_base_slot: %w", err))
			}
			return nil, nil, fmt.Errorf("open the PKCS#11 token: %w", err)
		}
		engine = p11
	} else {
		if engine, err = OpenFileEngine(cfg.Homedir); err != nil {
			return nil, nil, fmt.Errorf("open the key store: %w", err)
		}
	}
	preloaded := map[string]Handle{}
	failed := map[string]error{}
	aliases := map[string]string{} // the engine's names of preloaded keys (base-token labels, store files) → their ids
	for id, uri := range cfg.PreloadedKeys {
		var h Handle
		var err error
		if strings.HasPrefix(uri, "file://") {
			path := config.FilePath(uri)
			h, err = LoadKeyFile(id, path)
			// A file in the key store is also the engine's key of its
			// name: that name is the preloaded key's, whether the file
			// loaded or not (a key created under it would be this one
			// after a restart).
			if fe, ok := engine.(*FileEngine); ok {
				if name, ok := fe.IDOfFile(path); ok && name != id {
					aliases[name] = id
				}
			}
		} else if name, ok, _ := credential.Ref(uri); ok {
			h, err = LoadKeyCredential(id, name)
		} else {
			if p11 == nil {
				if p11, err = OpenPKCS11Module(ctx, cfg.PKCS11LibPath, log); err != nil {
					failed[id] = err
					continue
				}
			}
			h, err = p11.OpenURI(ctx, uri)
			if Engine(p11) == engine {
				// Its label on the base token is not a key of the engine's
				// to serve, create or delete, whether the key opened or not
				// (a key created under it would be this one after a restart).
				label := p11.BaseObjectLabel(uri)
				if label == "" && err == nil { // named by id=
					label, err = p11.BaseLabel(ctx, h)
				}
				if label != "" && label != id {
					aliases[label] = id
				}
			}
		}
		if err != nil {
			failed[id] = err
			continue
		}
		preloaded[id] = Preloaded(id, h)
	}
	svc := NewService(engine, preloaded, log)
	for label, id := range aliases {
		svc.MarkEngineAlias(label, id)
	}
	for id, err := range failed {
		log.Error("preloaded key unavailable", "key_id", id, "err", err)
		svc.MarkUnavailable(id, err)
	}
	closeAll := func() {
		svc.Close()
		if p11 != nil && Engine(p11) != engine { // opened only for preloaded keys
			p11.Close()
		}
	}
	return svc, closeAll, nil
}
