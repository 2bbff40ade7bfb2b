package dbus

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	godbus "github.com/godbus/dbus/v5"
)

// Call is the method call being served: who sent it, to which object, and
// whether the caller allows interactive authorization.
type Call struct {
	Sender      string
	Path        godbus.ObjectPath
	Interactive bool
}

// CallOf extracts the Call from a raw message (godbus injects a
// godbus.Message argument into exported methods that declare one).
func CallOf(msg godbus.Message) Call {
	c := Call{Interactive: msg.Flags&godbus.FlagAllowInteractiveAuthorization != 0}
	if v, ok := msg.Headers[godbus.FieldSender]; ok {
		c.Sender, _ = v.Value().(string)
	}
	if v, ok := msg.Headers[godbus.FieldPath]; ok {
		c.Path, _ = v.Value().(godbus.ObjectPath)
	}
	return c
}

// Interface is one D-Bus interface of an object: its methods (godbus method
// table: funcs whose last result is *godbus.Error; a leading godbus.Message
// argument receives the raw call) and a property getter.
type Interface struct {
	Name    string
	Methods map[string]any
	// Properties returns the interface's properties for entity id ("" on the root).
	Properties func(id string) (map[string]godbus.Variant, error)
	// Intercepted lists the methods a connection's incoming interceptor
	// serves before godbus's method table sees the call (keyd's fast
	// path), member → in signature: Export checks them against the
	// shipped XML too, so no table of the service's answers a method the
	// interface does not declare, or with other arguments.
	Intercepted map[string]string
}

// Collection is a family of child objects at <root>/<Name>/<escaped id>.
type Collection struct {
	Name       string
	Interfaces []Interface
	Exists     func(id string) bool
	List       func() ([]string, error)
}

// Server serves one service's objects from a single registry: the root with
// ObjectManager, and each collection's children as a subtree, so children
// come and go without Export calls while traffic flows.
type Server struct {
	conn  *godbus.Conn
	root  godbus.ObjectPath
	log   *slog.Logger
	ifs   []Interface
	colls []Collection
	// CanRead authorizes property reads, Introspect of children and
	// GetManagedObjects (the root, then each child it lists); id is "" for
	// the root. nil allows everyone.
	CanRead func(call Call, id string) *godbus.Error
	// CanReceive decides whether bus peer may receive a signal about
	// entity id ("" for the root); nil asks CanRead. With both nil,
	// signals are broadcast.
	CanReceive func(peer, id string) bool

	signals chan outSignal

	peerMu     sync.Mutex
	peerQueues map[string][]outSignal // signals waiting per peer; present while its worker runs
	deciders   chan struct{}          // signalDeciders slots
}

// NewServer makes a registry for the service rooted at root. Its signals
// are delivered from a goroutine that ends when conn closes.
func NewServer(conn *godbus.Conn, root godbus.ObjectPath, log *slog.Logger) *Server {
	s := &Server{conn: conn, root: root, log: log, signals: make(chan outSignal, signalQueueLen)}
	go s.deliverSignals(conn.Context())
	return s
}

// Conn is the bus connection the server exports on.
func (s *Server) Conn() *godbus.Conn { return s.conn }

// Root sets the interfaces of the root object.
func (s *Server) Root(ifaces ...Interface) { s.ifs = ifaces }

// AddCollection registers a family of child objects.
func (s *Server) AddCollection(c Collection) { s.colls = append(s.colls, c) }

// Export exports every object. Call it before Claim, so a client that sees
// the name can use every object at once. It first checks every interface's
// method table against its shipped XML (CheckMethods) and exports nothing
// on a mismatch.
func (s *Server) Export() error {
	var bad []error
	for _, i := range s.ifs {
		if err := CheckMethods(i); err != nil {
			bad = append(bad, err)
		}
	}
	for _, c := range s.colls {
		for _, i := range c.Interfaces {
			if err := CheckMethods(i); err != nil {
				bad = append(bad, err)
			}
		}
	}
	if err := errors.Join(bad...); err != nil {
		return err
	}
	for _, i := range s.ifs {
		if err := s.conn.ExportMethodTable(i.Methods, s.root, i.Name); err != nil {
			return fmt.Errorf("export %s: %w", i.Name, err)
		}
	}
	if err := s.conn.ExportMethodTable(s.propsTable(), s.root, "org.freedesktop.DBus.Properties"); err != nil {
		return err
	}
	if err := s.conn.ExportMethodTable(s.introspectTable(), s.root, "org.freedesktop.DBus.Introspectable"); err != nil {
		return err
	}
	om := map[string]any{"GetManagedObjects": s.getManagedObjects}
	if err := s.conn.ExportMethodTable(om, s.root, "org.freedesktop.DBus.ObjectManager"); err != nil {
		return err
	}
	for _, c := range s.colls {
		p := godbus.ObjectPath(string(s.root) + "/" + c.Name)
		for _, i := range c.Interfaces {
			if err := s.conn.ExportSubtreeMethodTable(i.Methods, p, i.Name); err != nil {
				return fmt.Errorf("export %s: %w", i.Name, err)
			}
		}
		if err := s.conn.ExportSubtreeMethodTable(s.propsTable(), p, "org.freedesktop.DBus.Properties"); err != nil {
			return err
		}
		if err := s.conn.ExportSubtreeMethodTable(s.introspectTable(), p, "org.freedesktop.DBus.Introspectable"); err != nil {
			return err
		}
	}
	return nil
}

// Claim requests the well-known name without queueing; not becoming the
// primary owner is an error (another instance runs, or the bus policy forbids it).
func (s *Server) Claim(name string) error {
	reply, err := s.conn.RequestName(name, godbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("request bus name %s: %w", name, err)
	}
	if reply != godbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("request bus name %s: already owned by another process", name)
	}
	return nil
}

// ChildPath is the object path of id in collection.
func (s *Server) ChildPath(collection, id string) godbus.ObjectPath {
	return ChildPath(s.root, collection, id)
}

// resolve maps a path to (collection, id); coll is nil for the root.
func (s *Server) resolve(p godbus.ObjectPath) (coll *Collection, id string, ok bool) {
	if p == s.root {
		return nil, "", true
	}
	name, elem, found := splitChildPath(s.root, p)
	if !found {
		return nil, "", false
	}
	for i := range s.colls {
		if s.colls[i].Name == name {
			id, ok := UnescapePathElement(elem)
			return &s.colls[i], id, ok
		}
	}
	return nil, "", false
}

// splitChildPath splits root/<collection>/<element> (ChildPath's form).
func splitChildPath(root, p godbus.ObjectPath) (collection, elem string, ok bool) {
	rest, found := strings.CutPrefix(string(p), string(root)+"/")
	if !found {
		return "", "", false
	}
	collection, elem, found = strings.Cut(rest, "/")
	if !found || elem == "" || strings.Contains(elem, "/") {
		return "", "", false
	}
	return collection, elem, true
}

// ChildIDOf is the id path p names in root's collection, checked as
// Server.PathID checks it (for code that serves calls before a Server's
// tables see them), or the UnknownObject / InvalidArgs error PathID gives.
func ChildIDOf(root godbus.ObjectPath, collection string, p godbus.ObjectPath) (string, *godbus.Error) {
	name, elem, ok := splitChildPath(root, p)
	if !ok || name != collection {
		return "", unknownObject(p)
	}
	id, ok := UnescapePathElement(elem)
	if !ok {
		return "", unknownObject(p)
	}
	if derr := CheckPathID(p, id); derr != nil {
		return "", derr
	}
	return id, nil
}

// ChildID resolves the entity a child-object call is addressed to, or the
// UnknownObject error every caller of a missing object gets.
func (s *Server) ChildID(msg godbus.Message) (string, *godbus.Error) {
	id, derr := s.PathID(msg)
	if derr != nil {
		return "", derr
	}
	if c, _, _ := s.resolve(CallOf(msg).Path); !c.Exists(id) {
		return "", unknownObject(CallOf(msg).Path)
	}
	return id, nil
}

// PathID is the entity id a child-object path names, without checking that
// it exists, so adapters can authorize first and not reveal to unauthorized
// callers which ids exist. Follow it with Exists.
func (s *Server) PathID(msg godbus.Message) (string, *godbus.Error) {
	p := CallOf(msg).Path
	c, id, ok := s.resolve(p)
	if !ok || c == nil {
		return "", unknownObject(p)
	}
	if derr := CheckPathID(p, id); derr != nil {
		return "", derr
	}
	return id, nil
}

// Exists reports whether the child object a call addresses exists, or the
// UnknownObject error.
func (s *Server) Exists(msg godbus.Message) *godbus.Error {
	p := CallOf(msg).Path
	c, id, ok := s.resolve(p)
	if !ok || c == nil {
		return unknownObject(p)
	}
	if derr := CheckPathID(p, id); derr != nil {
		return derr
	}
	if !c.Exists(id) {
		return unknownObject(p)
	}
	return nil
}

func unknownObject(p godbus.ObjectPath) *godbus.Error {
	return NewError("org.freedesktop.DBus.Error.UnknownObject", fmt.Sprintf("no object at %s", shortPath(p)))
}

func (s *Server) ifacesAt(p godbus.ObjectPath) (ifs []Interface, id string, err *godbus.Error) {
	c, id, ok := s.resolve(p)
	switch {
	case !ok:
		return nil, "", unknownObject(p)
	case c == nil:
		return s.ifs, "", nil
	case CheckPathID(p, id) != nil:
		return nil, "", CheckPathID(p, id)
	case !c.Exists(id):
		return nil, "", unknownObject(p)
	}
	return c.Interfaces, id, nil
}

func (s *Server) propsTable() map[string]any {
	return map[string]any{
		"Get": func(msg godbus.Message, iface, prop string) (godbus.Variant, *godbus.Error) {
			props, derr := s.properties(msg, iface)
			if derr != nil {
				return godbus.Variant{}, derr
			}
			v, ok := props[prop]
			if !ok {
				return godbus.Variant{}, NewError("org.freedesktop.DBus.Error.UnknownProperty",
					fmt.Sprintf("interface %s has no property %.100q", iface, prop))
			}
			return v, nil
		},
		"GetAll": func(msg godbus.Message, iface string) (map[string]godbus.Variant, *godbus.Error) {
			return s.properties(msg, iface)
		},
		"Set": func(msg godbus.Message, iface, prop string, _ godbus.Variant) *godbus.Error {
			if _, derr := s.properties(msg, iface); derr != nil {
				return derr
			}
			return NewError("org.freedesktop.DBus.Error.PropertyReadOnly",
				fmt.Sprintf("property %s.%s is read-only; state changes go through methods", iface, prop))
		},
	}
}

func (s *Server) properties(msg godbus.Message, iface string) (map[string]godbus.Variant, *godbus.Error) {
	call := CallOf(msg)
	// Authorize before looking the object up: whether an id exists is
	// itself something only readers may learn.
	c, id, ok := s.resolve(call.Path)
	if !ok || (c == nil && call.Path != s.root) {
		return nil, unknownObject(call.Path)
	}
	if c != nil {
		if derr := CheckPathID(call.Path, id); derr != nil {
			return nil, derr
		}
	}
	if s.CanRead != nil {
		if derr := s.CanRead(call, id); derr != nil {
			return nil, derr
		}
	}
	ifs, _, derr := s.ifacesAt(call.Path)
	if derr != nil {
		return nil, derr
	}
	for _, i := range ifs {
		if i.Name != iface {
			continue
		}
		if i.Properties == nil {
			return map[string]godbus.Variant{}, nil
		}
		props, err := i.Properties(id)
		if err != nil {
			s.log.Error("read properties", "path", call.Path, "interface", iface, "err", err)
			return nil, ToError(err)
		}
		return props, nil
	}
	if iface == "" {
		return nil, NewError(ErrInvalidArgs, "an interface name is required")
	}
	return nil, NewError("org.freedesktop.DBus.Error.UnknownInterface",
		fmt.Sprintf("object %s has no interface %q", call.Path, iface))
}

func (s *Server) introspectTable() map[string]any {
	return map[string]any{
		"Introspect": func(msg godbus.Message) (string, *godbus.Error) {
			p := CallOf(msg).Path
			if p == s.root {
				var names []string
				for _, c := range s.colls {
					names = append(names, c.Name)
				}
				return introspect(ifaceXMLs(s.ifs), true, names), nil
			}
			for _, c := range s.colls {
				if string(p) == string(s.root)+"/"+c.Name {
					// The node lists every id: readers only.
					if s.CanRead != nil {
						if derr := s.CanRead(CallOf(msg), ""); derr != nil {
							return "", derr
						}
					}
					ids, err := c.List()
					if err != nil {
						s.log.Error("list children", "collection", c.Name, "err", err)
						return "", ToError(err)
					}
					elems := make([]string, len(ids))
					for i, id := range ids {
						elems[i] = EscapePathElement(id)
					}
					return introspectNode(elems), nil
				}
			}
			// A child: authorize before looking it up, so a caller who
			// may not read it gets the same answer whether it exists or not.
			if c, id, ok := s.resolve(p); ok && c != nil && s.CanRead != nil {
				if derr := CheckPathID(p, id); derr != nil {
					return "", derr
				}
				if derr := s.CanRead(CallOf(msg), id); derr != nil {
					return "", derr
				}
			}
			ifs, _, derr := s.ifacesAt(p)
			if derr != nil {
				return "", derr
			}
			return introspect(ifaceXMLs(ifs), false, nil), nil
		},
	}
}

func ifaceXMLs(ifs []Interface) []string {
	out := make([]string, len(ifs))
	for i, x := range ifs {
		out[i] = MustInterfaceXML(x.Name)
	}
	return out
}

type managedObjects = map[godbus.ObjectPath]map[string]map[string]godbus.Variant

func (s *Server) getManagedObjects(msg godbus.Message) (managedObjects, *godbus.Error) {
	call := CallOf(msg)
	if s.CanRead != nil {
		if derr := s.CanRead(call, ""); derr != nil {
			return nil, derr
		}
	}
	out := managedObjects{}
	for _, c := range s.colls {
		ids, err := c.List()
		if err != nil {
			s.log.Error("list children", "collection", c.Name, "err", err)
			return nil, ToError(err)
		}
		sort.Strings(ids)
		for _, id := range ids {
			// Each child's properties are a read of that child: only
			// those the caller may read (Properties.GetAll would refuse
			// the others).
			if s.CanRead != nil && s.CanRead(call, id) != nil {
				continue
			}
			ifs, err := s.childInterfaces(&c, id)
			if err != nil {
				// A child that vanished or cannot be read right now is left out
				// rather than failing the whole listing.
				s.log.Warn("read child for GetManagedObjects", "collection", c.Name, "id", id, "err", err)
				continue
			}
			out[s.ChildPath(c.Name, id)] = ifs
		}
	}
	return out, nil
}

func (s *Server) childInterfaces(c *Collection, id string) (map[string]map[string]godbus.Variant, error) {
	ifs := map[string]map[string]godbus.Variant{}
	for _, i := range c.Interfaces {
		props := map[string]godbus.Variant{}
		if i.Properties != nil {
			var err error
			if props, err = i.Properties(id); err != nil {
				return nil, err
			}
		}
		ifs[i.Name] = props
	}
	return ifs, nil
}

func (s *Server) collection(name string) *Collection {
	for i := range s.colls {
		if s.colls[i].Name == name {
			return &s.colls[i]
		}
	}
	return nil
}

// Added announces a new child with InterfacesAdded, to its readers.
func (s *Server) Added(collection, id string) {
	c := s.collection(collection)
	if c == nil {
		return
	}
	ifs, err := s.childInterfaces(c, id)
	if err != nil {
		s.log.Warn("announce new object", "collection", collection, "id", id, "err", err)
		return
	}
	s.enqueue(outSignal{path: s.root, name: "org.freedesktop.DBus.ObjectManager.InterfacesAdded",
		args: []any{s.ChildPath(collection, id), ifs}, id: id})
}

// Removed announces a child's removal with InterfacesRemoved, to its readers.
func (s *Server) Removed(collection, id string) {
	c := s.collection(collection)
	if c == nil {
		return
	}
	names := make([]string, len(c.Interfaces))
	for i, x := range c.Interfaces {
		names[i] = x.Name
	}
	s.enqueue(outSignal{path: s.root, name: "org.freedesktop.DBus.ObjectManager.InterfacesRemoved",
		args: []any{s.ChildPath(collection, id), names}, id: id})
}

// PropertiesChanged emits org.freedesktop.DBus.Properties.PropertiesChanged
// to the readers of the object at path.
func (s *Server) PropertiesChanged(path godbus.ObjectPath, iface string, changed map[string]godbus.Variant) {
	s.Emit(path, "org.freedesktop.DBus.Properties.PropertiesChanged", iface, changed, []string{})
}
