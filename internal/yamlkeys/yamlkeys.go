// Package yamlkeys lists the key paths of a YAML document, for the tests
// that check one configuration file against another (deploy/deploytest's
// chart, cmd's deploy files). Test support only: nothing in the binary
// imports it.
package yamlkeys

import "go.yaml.in/yaml/v3"

// Collect adds the key paths of the YAML tree n to out: "a.b" for a key b
// under a, "list[].c" for a key c in the items of list.
func Collect(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			Collect(c, prefix, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			Collect(c, prefix+"[]", out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if prefix != "" {
				k = prefix + "." + k
			}
			out[k] = true
			Collect(n.Content[i+1], k, out)
		}
	}
}
