package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/levenshtein"
)

// maxSuggestDistance is how far (in edits) a typed key may be from a known
// one for "did you mean" to suggest it.
const maxSuggestDistance = 2

// maxSuggestInput bounds the work on a very long typed key: every known key
// is far shorter, so cutting it changes no suggestion.
const maxSuggestInput = 64

// unknownKeyReason explains an unknown key: a close known key if there is
// one, else how to supply a secret if the key looks like one, else the list
// of keys allowed here. upstream is the enclosing upstream's name, if known.
func unknownKeyReason(name string, ks keys, upstream string) string {
	known := make([]string, 0, len(ks))
	for k := range ks {
		known = append(known, k)
	}
	slices.Sort(known)
	if s := suggest(name, known); s != "" {
		return fmt.Sprintf("unknown key %q; did you mean %q?", name, s)
	}
	if hint := secretHint(name, upstream); hint != "" {
		return fmt.Sprintf("unknown key %q: %s", name, hint)
	}
	return fmt.Sprintf("unknown key %q; the keys allowed here are %s", name, strings.Join(known, ", "))
}

// secretHint says how to supply a secret when the key looks like one. The
// file never holds secret values: it is often checked in or mounted from a
// ConfigMap, and secrets must not reach argv or a world-readable file.
func secretHint(name, upstream string) string {
	env := "PAYRAILS_PROXY_<NAME>_"
	if upstream != "" && validName(upstream) {
		env = envPrefix + envName(upstream) + "_"
	}
	k := strings.ToLower(name)
	switch {
	case strings.Contains(k, "pass"):
		return "secrets are never read from the config file; write the key passphrase to a file and set " +
			"key_passphrase_file, or set the environment variable " + env + "KEY_PASSPHRASE " +
			"(PAYRAILS_PROXY_KEY_PASSPHRASE applies to every upstream)"
	case slices.Contains(strings.FieldsFunc(k, func(r rune) bool { return r == '_' || r == '-' }), "pin"):
		return "the PKCS#11 PIN is never read from the config file; write it to a file and put " +
			"pin-source=file:/PATH in key_uri, or set the environment variable " + env + "PKCS11_PIN " +
			"(PAYRAILS_PROXY_PKCS11_PIN applies to every upstream)"
	case strings.Contains(k, "secret"), strings.Contains(k, "api_key"), strings.Contains(k, "api-key"), strings.Contains(k, "apikey"):
		return "secrets are never read from the config file; write the client secret to a file and set " +
			"token.client_secret_file, or set the environment variable " + env + "CLIENT_SECRET"
	}
	return ""
}

// suggest returns the known key closest to name within maxSuggestDistance,
// or "". Case and '-' versus '_' are ignored, since those are the usual slips.
func suggest(name string, known []string) string {
	norm := strings.ReplaceAll(strings.ToLower(name), "-", "_")
	if r := []rune(norm); len(r) > maxSuggestInput {
		norm = string(r[:maxSuggestInput]) // so long it cannot be close to any key anyway
	}
	best, bestDist := "", maxSuggestDistance+1
	for _, k := range known {
		if dist := levenshtein.Distance(norm, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}
