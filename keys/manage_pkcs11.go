// Managing the keys of a token: Delete, Move (crash-safe through a trash
// label), List, and keys named by a URI (OpenURI).

package keys

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/edgev2/edgev2/fault"
	"github.com/edgev2/edgev2/keys/pkcs11uri"
)

// Delete implements Engine: it destroys every object labelled id.
func (e *PKCS11Engine) Delete(ctx context.Context, id string) error {
	slot, err := e.needBase()
	if err != nil {
		return err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := e.lockWrites(ctx, slot); err != nil {
		return err
	}
	defer e.unlockWrites()
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		objs, err := labelled(slot.mod.ctx, h, id)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return fault.New(fault.NotFound, "key %q not found", id)
		}
		for _, o := range objs {
			if err := slot.mod.ctx.DestroyObject(h, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return mapCKR(err, "delete key %q on PKCS#11 token %q", id, slot.label)
	}
	e.log.Info("pkcs11 key deleted", "key", id, "token", slot.label)
	return nil
}

// Move implements Engine. It relabels the old target to a trash label,
// relabels the source to the target and then destroys the trash, so a crash
// at any point leaves either the old keys or the new, and recoverMoves
// finishes the job on the next start.
func (e *PKCS11Engine) Move(ctx context.Context, from, to string) error {
	slot, err := e.needBase()
	if err != nil {
		return err
	}
	if err := ValidateID(from); err != nil {
		return err
	}
	if err := ValidateID(to); err != nil {
		return err
	}
	if err := e.lockWrites(ctx, slot); err != nil {
		return err
	}
	defer e.unlockWrites()
	c := slot.mod.ctx
	trash := trashPrefix + to
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		src, err := labelled(c, h, from)
		if err != nil {
			return err
		}
		if len(src) == 0 {
			return fault.New(fault.NotFound, "key %q not found", from)
		}
		if from == to {
			return nil
		}
		dst, err := labelled(c, h, to)
		if err != nil {
			return err
		}
		if err := relabel(c, h, dst, trash); err != nil {
			return err
		}
		// Public objects first: the private or secret object carries the
		// label Open and List go by, so relabelling it is the commit point.
		sortPrivateLast(c, h, src)
		if err := relabel(c, h, src, to); err != nil {
			return err
		}
		for _, o := range dst {
			if err := c.DestroyObject(h, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return mapCKR(err, "move key %q to %q on PKCS#11 token %q", from, to, slot.label)
	}
	e.log.Info("pkcs11 key moved", "from", from, "to", to, "token", slot.label)
	return nil
}

func relabel(c *pkcs11.Ctx, h pkcs11.SessionHandle, objs []pkcs11.ObjectHandle, label string) error {
	for _, o := range objs {
		if err := c.SetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			return err
		}
	}
	return nil
}

func sortPrivateLast(c *pkcs11.Ctx, h pkcs11.SessionHandle, objs []pkcs11.ObjectHandle) {
	rank := map[pkcs11.ObjectHandle]int{}
	for _, o := range objs {
		a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
		if err == nil {
			if cl := attrUint(a[0].Value); cl == pkcs11.CKO_PRIVATE_KEY || cl == pkcs11.CKO_SECRET_KEY {
				rank[o] = 1
			}
		}
	}
	sort.SliceStable(objs, func(i, j int) bool { return rank[objs[i]] < rank[objs[j]] })
}

// recoverMoves finishes Moves a crash interrupted. For each target with
// trash objects: if a key is labelled with the target again, the source was
// relabelled (the commit point) and the trash is destroyed; otherwise the
// trash goes back to its old label and the Move never happened.
func (e *PKCS11Engine) recoverMoves(ctx context.Context) error {
	slot := e.base
	c := slot.mod.ctx
	err := slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		trash := map[string][]pkcs11.ObjectHandle{}
		var targets []string
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY, pkcs11.CKO_PUBLIC_KEY} {
			objs, err := findObjects(c, h, keyTemplate(class, "", nil))
			if err != nil {
				return err
			}
			for _, o := range objs {
				a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err != nil || !strings.HasPrefix(string(a[0].Value), trashPrefix) {
					continue
				}
				to := strings.TrimPrefix(string(a[0].Value), trashPrefix)
				if trash[to] == nil {
					targets = append(targets, to)
				}
				trash[to] = append(trash[to], o)
			}
		}
		for _, to := range targets {
			if _, _, err := findKey(c, h, to, nil, to); err == nil {
				e.log.Warn("pkcs11 finishing an interrupted key move: destroying the replaced key", "key", to)
				for _, o := range trash[to] {
					if err := c.DestroyObject(h, o); err != nil {
						return err
					}
				}
			} else {
				e.log.Warn("pkcs11 undoing an interrupted key move: restoring the key", "key", to)
				if err := relabel(c, h, trash[to], to); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return mapCKR(err, "recover interrupted key moves on PKCS#11 token %q", slot.label)
	}
	return nil
}

// List implements Engine: the labels of private and secret keys, sorted.
func (e *PKCS11Engine) List(ctx context.Context) ([]string, error) {
	slot, err := e.needBase()
	if err != nil {
		return nil, err
	}
	c := slot.mod.ctx
	seen := map[string]bool{}
	err = slot.withSession(ctx, func(h pkcs11.SessionHandle) error {
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_SECRET_KEY} {
			objs, err := findObjects(c, h, keyTemplate(class, "", nil))
			if err != nil {
				return err
			}
			for _, o := range objs {
				a, err := c.GetAttributeValue(h, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
				if err != nil {
					return err
				}
				if label := string(a[0].Value); ValidateID(label) == nil {
					seen[label] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, mapCKR(err, "list keys on PKCS#11 token %q", slot.label)
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// OpenURI opens a key named by a PKCS#11 URI, as [preloaded_keys] entries
// do. The key is on the base token when the URI names no token or names the
// base token; otherwise the engine logs in to the token the URI names with
// the URI's own PIN (once per token; a refused PIN is never tried again).
func (e *PKCS11Engine) OpenURI(ctx context.Context, uri string) (Handle, error) {
	u, err := pkcs11uri.Parse(uri)
	if err != nil {
		return nil, err
	}
	shown := u.String()
	if u.Object == "" && len(u.ID) == 0 {
		return nil, fault.New(fault.InvalidArgs, "PKCS#11 URI %s names no key: add object= or id=", shown)
	}
	if u.Type != "" && u.Type != "private" && u.Type != "secret-key" {
		return nil, fault.New(fault.InvalidArgs, "PKCS#11 URI %s: type=%s is not a key edgev2 can use (want private or secret-key)", shown, u.Type)
	}
	slot, err := e.slotFor(ctx, u)
	if err != nil {
		return nil, err
	}
	if err := slot.samePIN(u, "preloaded key URI "+shown); err != nil {
		return nil, err
	}
	keyID := u.Object
	if keyID == "" {
		keyID = "id=" + hex.EncodeToString(u.ID)
	}
	k, err := openKey(ctx, slot, keyID, u.Object, u.ID, true)
	if err != nil {
		return nil, err
	}
	if u.Type == "private" && k.class != pkcs11.CKO_PRIVATE_KEY || u.Type == "secret-key" && k.class != pkcs11.CKO_SECRET_KEY {
		return nil, fault.New(fault.NotFound, "PKCS#11 URI %s: the key found is not of type %s", shown, u.Type)
	}
	return k, nil
}

// BaseLabel is the id under which the engine itself serves h (Open, List,
// Delete, Move go by label): its object's label when h, a key OpenURI
// opened, is on the base token; "" when it is elsewhere.
func (e *PKCS11Engine) BaseLabel(ctx context.Context, h Handle) (string, error) {
	k, ok := h.(*pkcs11Handle)
	if !ok || e.base == nil || k.slot != e.base {
		return "", nil
	}
	var label string
	err := k.use(ctx, func(c *pkcs11.Ctx, s pkcs11.SessionHandle, obj pkcs11.ObjectHandle) error {
		a, err := c.GetAttributeValue(s, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
		if err != nil {
			return err
		}
		label = string(a[0].Value)
		return nil
	})
	if err != nil {
		return "", mapCKR(err, "read the label of key %q on PKCS#11 token %q", k.info.ID, k.slot.label)
	}
	return label, nil
}

// isBase reports whether u, of the engine's module, names its base token.
func (e *PKCS11Engine) isBase(u *pkcs11uri.URI) bool {
	if e.base == nil {
		return false
	}
	if !namesToken(u) {
		return true
	}
	var si pkcs11.SlotInfo
	var ti pkcs11.TokenInfo
	err := e.mod.call(e.base.who(), "C_GetTokenInfo", func() (err error) {
		if si, err = e.mod.ctx.GetSlotInfo(e.base.id); err != nil {
			return err
		}
		ti, err = e.mod.ctx.GetTokenInfo(e.base.id)
		return err
	})
	return err == nil && (!u.HasSlotID || u.SlotID == e.base.id) &&
		libraryMatches(e.mod.info, u) && slotMatches(u, si, ti)
}

// BaseObjectLabel is the label (object=) uri gives a key on the engine's
// base token, whether the key exists, opens, or not; "" when uri names
// another token or module, or no label.
func (e *PKCS11Engine) BaseObjectLabel(uri string) string {
	u, err := pkcs11uri.Parse(uri)
	if err != nil || (u.ModulePath != "" && u.ModulePath != e.mod.path) || !e.isBase(u) {
		return ""
	}
	return u.Object
}

func (e *PKCS11Engine) slotFor(ctx context.Context, u *pkcs11uri.URI) (*p11Slot, error) {
	mod := e.mod
	if u.ModulePath != "" && u.ModulePath != e.mod.path {
		m, err := acquireModule(u.ModulePath)
		if err != nil {
			return nil, err
		}
		mod = m
		defer mod.release() // openSlot retains it for the slot it returns
	}
	if mod == e.mod && e.isBase(u) {
		return e.base, nil
	}
	var id uint
	err := mod.call(fmt.Sprintf("module %q", mod.path), "finding a token", func() (err error) {
		id, _, err = findSlot(mod, u, "preloaded key")
		return err
	})
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s#%d", mod.path, id)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fault.New(fault.Unavailable, "the pkcs11 engine is closed")
	}
	s := e.others[key]
	e.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err = e.openSlot(ctx, mod, u, "preloaded key URI "+u.String())
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		s.close()
		mod.release()
		return nil, fault.New(fault.Unavailable, "the pkcs11 engine is closed")
	}
	if prev := e.others[key]; prev != nil {
		// Lost a race with another OpenURI for the same token.
		s.close()
		mod.release()
		return prev, nil
	}
	e.others[key] = s
	return s, nil
}
