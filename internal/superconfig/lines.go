package superconfig

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lineIndex maps a key path ("provisioning.attestation.method",
// "principal[1].user") to the line it is set on, so errors found after
// decoding still point at the line to fix.
type lineIndex map[string]int

// indexLines records where every key and table header is. It runs on text
// the strict decoder already accepted, so parse errors cannot occur; if one
// does, the index is simply partial.
func indexLines(data []byte) lineIndex {
	idx := lineIndex{}
	arrays := map[string]int{} // array-of-tables path (unindexed) -> entries so far
	var p unstable.Parser
	p.Reset(data)
	nl := newlines(data)
	prefix := ""
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, line := keyParts(nl, n.Key())
			plain := strings.Join(parts, ".")
			if n.Kind == unstable.ArrayTable {
				arrays[plain]++
			}
			prefix = indexed(parts, arrays)
			if _, ok := idx[prefix]; !ok {
				idx[prefix] = line
			}
		case unstable.KeyValue:
			indexKeyValue(nl, n, prefix, idx)
		}
	}
	return idx
}

func indexKeyValue(nl []int, n *unstable.Node, prefix string, idx lineIndex) {
	parts, line := keyParts(nl, n.Key())
	path := prefix
	for _, part := range parts {
		if path != "" {
			path += "."
		}
		path += part
		if _, ok := idx[path]; !ok {
			idx[path] = line // a dotted key's tables start where it is first used
		}
	}
	idx[path] = line
	if v := n.Value(); v.Kind == unstable.InlineTable {
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				indexKeyValue(nl, c, path, idx)
			}
		}
	}
}

// newlines returns the offsets of every '\n' in data.
func newlines(data []byte) []int {
	var nl []int
	for i, b := range data {
		if b == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

func keyParts(nl []int, it unstable.Iterator) (parts []string, line int) {
	for it.Next() {
		k := it.Node()
		if line == 0 && k.Raw.Length > 0 {
			// Line = 1 + newlines before the offset.
			line = 1 + sort.SearchInts(nl, int(k.Raw.Offset))
		}
		parts = append(parts, string(k.Data))
	}
	return parts, line
}

// indexed inserts the current entry's index after every array-of-tables
// prefix: principal.x -> principal[2].x.
func indexed(parts []string, arrays map[string]int) string {
	var b strings.Builder
	for i, part := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
		if n := arrays[strings.Join(parts[:i+1], ".")]; n > 0 {
			fmt.Fprintf(&b, "[%d]", n-1)
		}
	}
	return b.String()
}

// line returns the line of key, or of the nearest enclosing key or table
// that is in the file (a missing setting points at its table); 0 if none.
func (idx lineIndex) line(key string) int {
	for key != "" {
		if l, ok := idx[key]; ok {
			return l
		}
		cut := strings.LastIndexAny(key, ".[")
		if cut < 0 {
			return 0
		}
		key = key[:cut]
	}
	return 0
}
