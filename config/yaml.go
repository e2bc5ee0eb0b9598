package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxMergeDepth bounds nested merge keys (<<: *a where a itself merges).
// YAML allows an anchor to contain an alias to itself, so without a bound a
// crafted file could make the walk loop.
const maxMergeDepth = 8

// decoder walks a yaml.Node tree against the schema in schema.go, filling a
// raw and collecting every problem with its key path and line.
type decoder struct {
	file string // Error.Source: "file x.yaml"
	errs *collector
	// upstreamName is the name of the upstream being walked ("" outside
	// upstreams or when unknown), used in hints about secrets.
	upstreamName string
}

// handler decodes the value node of one known key; path is the full key.
type handler func(d *decoder, val *yaml.Node, path string)

// keys is the schema of one mapping: the known keys and their handlers.
type keys map[string]handler

// pair is one key/value entry of a mapping, after merge keys are expanded.
type pair struct{ key, val *yaml.Node }

// decodeYAML parses data (one YAML document) and walks it into r. An empty
// document is valid and leaves r untouched.
func decodeYAML(data []byte, r *raw, errs *collector) {
	root, err := parseDocument(data)
	if err != nil {
		errs.add(syntaxError(r.file, data, err))
		return
	}
	d := &decoder{file: r.file, errs: errs}
	root = deref(root)
	if root == nil || isNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		d.problem("", root.Line, "the top level must be a mapping of keys such as listen: and upstreams:, "+found(root))
		return
	}
	d.mapping(root, "", topKeys(r))
}

// parseDocument decodes exactly one YAML document into a node tree. It
// returns (nil, nil) for an empty document. The parser is third-party code
// fed with operator input; a panic in it is turned into an error rather
// than taking the process down.
func parseDocument(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if p := recover(); p != nil {
			root, err = nil, fmt.Errorf("yaml: the parser failed: %v", p)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		if len(next.Content) > 0 && !isNull(next.Content[0]) {
			return nil, errMultipleDocuments
		}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

var errMultipleDocuments = errors.New("the file holds more than one YAML document (a second ---); keep only one")

// yamlLine matches the "yaml: line N: " prefix of parser errors.
var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// flowIPv6 finds an unquoted IPv6 address starting with "::" in a flow list
// ([127.0.0.1/32, ::1/128]), which the YAML parser rejects.
var flowIPv6 = regexp.MustCompile(`[\[,]\s*::`)

// syntaxError turns a parser error into an Error with its line.
func syntaxError(file string, data []byte, err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	reason := "the file is not valid YAML: " + msg
	if !errors.Is(err, errMultipleDocuments) {
		reason += "; fix the syntax (indent with spaces, not tabs; quote values containing ': ' or '#')"
	}
	if flowIPv6.Match(data) {
		reason += `; IPv6 addresses starting with "::" must be quoted inside [...] lists, e.g. ["::1/128"]`
	}
	return &Error{Source: file, Line: line, Reason: reason, err: err}
}

// problem records an Error in the file at key path and line.
func (d *decoder) problem(path string, line int, reason string) {
	d.errs.add(&Error{Source: d.file, Key: path, Line: line, Reason: reason})
}

// at is the origin of a value found in the file.
func (d *decoder) at(path string, line int) origin {
	return origin{source: d.file, key: path, line: line, fromFile: true}
}

// mapping walks a mapping node with the schema ks. A null node (the key is
// present but empty) is accepted as an empty mapping. It reports whether n
// was usable (a mapping or null).
func (d *decoder) mapping(n *yaml.Node, path string, ks keys) bool {
	n = deref(n)
	if n == nil || isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		d.problem(path, n.Line, "must be a mapping (key: value pairs), "+found(n))
		return false
	}
	for _, p := range d.pairs(n, path, 0, map[*yaml.Node]bool{n: true}) {
		name := p.key.Value
		h, ok := ks[name]
		if !ok {
			d.problem(joinKey(path, name), p.key.Line, unknownKeyReason(name, ks, d.upstreamName))
			continue
		}
		h(d, p.val, joinKey(path, name))
	}
	return true
}

// pairs lists the entries of mapping n in document order, reporting
// duplicate and non-scalar keys and expanding merge keys (<<: *anchor).
// Explicit keys win over merged ones; among merged mappings the first wins,
// as the YAML merge-key spec says. merged stops a mapping being merged twice.
func (d *decoder) pairs(n *yaml.Node, path string, depth int, merged map[*yaml.Node]bool) []pair {
	var out, merges []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		switch {
		case k == nil || k.Kind != yaml.ScalarNode:
			d.problem(path, n.Content[i].Line, "keys must be plain words such as listen, "+found(n.Content[i]))
		case k.ShortTag() == "!!merge":
			merges = append(merges, pair{k, v})
		case seen[k.Value] > 0:
			d.problem(joinKey(path, k.Value), k.Line, fmt.Sprintf("duplicate key: it is already set on line %d; keep one", seen[k.Value]))
		default:
			seen[k.Value] = max(k.Line, 1)
			out = append(out, pair{k, v})
		}
	}
	for _, m := range merges {
		for _, src := range d.mergeSources(m, path, depth) {
			if merged[src] {
				continue
			}
			merged[src] = true
			for _, p := range d.pairs(src, path, depth+1, merged) {
				if seen[p.key.Value] == 0 {
					seen[p.key.Value] = max(p.key.Line, 1)
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// mergeSources returns the mappings a merge key refers to.
func (d *decoder) mergeSources(m pair, path string, depth int) []*yaml.Node {
	if depth >= maxMergeDepth {
		d.problem(path, m.key.Line, fmt.Sprintf("merge keys (<<) are nested more than %d deep; flatten them", maxMergeDepth))
		return nil
	}
	v := deref(m.val)
	items := []*yaml.Node{v}
	if v != nil && v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	var out []*yaml.Node
	for _, it := range items {
		it = deref(it)
		if it == nil || it.Kind != yaml.MappingNode {
			d.problem(path, m.key.Line, "a merge key (<<) must refer to a mapping, such as <<: *defaults")
			continue
		}
		out = append(out, it)
	}
	return out
}

// deref follows an alias to the node it names. It returns nil for a broken
// alias (the parser normally rejects those).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 16 {
			return nil
		}
		n = n.Alias
	}
	return n
}

// isNull reports whether n is a YAML null (~, null, or nothing at all).
func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// found describes what a node is, for "must be X, found Y" messages. It does
// not quote scalar values: an unexpected value might be a secret.
func found(n *yaml.Node) string {
	switch deref(n).Kind {
	case yaml.MappingNode:
		return "found a mapping"
	case yaml.SequenceNode:
		return "found a list"
	case yaml.ScalarNode:
		return "found a single value"
	default:
		return "found something else"
	}
}

// joinKey builds a dotted key path.
func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// peekName returns the value of the name key of an upstream item, "default"
// for an unnamed lone upstream, or "".
func peekName(item *yaml.Node, count int) string {
	item = deref(item)
	if item != nil && item.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := deref(item.Content[i]), deref(item.Content[i+1])
			if k != nil && k.Value == "name" && v != nil && v.Kind == yaml.ScalarNode && !isNull(v) {
				return strings.TrimSpace(v.Value)
			}
		}
	}
	if count == 1 {
		return "default"
	}
	return ""
}
