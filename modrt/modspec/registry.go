package modspec

import (
	"encoding/json"
	"fmt"
	"strings"
)

// SetRegistryPassword returns spec (ModuleSpec JSON) with
// config.settings.auth.password set to pw ("" removes it); every other
// value is kept as it was (object keys come out sorted).
func SetRegistryPassword(spec []byte, pw string) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("the module spec is not a JSON object")
	}
	path := []string{"config", "settings", "auth"}
	var set func(obj map[string]json.RawMessage, depth int) error
	set = func(obj map[string]json.RawMessage, depth int) error {
		name := path[depth]
		var child map[string]json.RawMessage
		if raw, ok := obj[name]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &child); err != nil {
				return fmt.Errorf("the module spec's %s is not an object", strings.Join(path[:depth+1], "."))
			}
		}
		if child == nil {
			if pw == "" {
				return nil
			}
			child = map[string]json.RawMessage{}
		}
		if depth == len(path)-1 {
			if pw == "" {
				delete(child, "password")
			} else {
				b, _ := json.Marshal(pw)
				child["password"] = b
			}
		} else if err := set(child, depth+1); err != nil {
			return err
		}
		b, err := json.Marshal(child)
		if err != nil {
			return err
		}
		obj[name] = b
		return nil
	}
	if err := set(doc, 0); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}
