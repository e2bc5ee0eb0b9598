package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/levenshtein"
)

// KeyURI is a parsed RFC 7512 PKCS#11 URI (upstreams[].key_uri, --key-uri,
// PAYRAILS_PROXY_KEY_URI): the token that holds the merchant's key and,
// with cert_file, the one key object in it. Only what the proxy can honour
// is accepted; everything else is refused by ParseKeyURI with a reason.
//
// A KeyURI never holds a PIN: pin-value is refused, and pin-source is only
// the path of a file that is read when the token is opened. It is
// immutable once returned; String renders it canonically (the form shown
// in messages, /certs and logs).
type KeyURI struct {
	// Token, Manufacturer, Serial and Model select the token by the
	// fields of its CK_TOKEN_INFO (token=, manufacturer=, serial=, model=);
	// "" matches any. At least one of Token, Serial and SlotID is set.
	Token, Manufacturer, Serial, Model string
	// SlotID is slot-id= (RFC 7512 §2.3, a decimal CK_SLOT_ID); nil for any.
	SlotID *uint
	// Object is object= (CKA_LABEL of the key); "" for any.
	Object string
	// ID is id= (CKA_ID, raw bytes after percent-decoding); nil for any.
	ID []byte
	// ModulePath is module-path=: the absolute path of the PKCS#11 library
	// (e.g. /usr/lib/softhsm/libsofthsm2.so). Always set.
	ModulePath string
	// PINFile is the path of pin-source=file:PATH; "" when the PIN comes
	// from the environment (PAYRAILS_PROXY_PKCS11_PIN).
	PINFile string
}

// NamesKey reports whether the URI names one key (object= or id=), as it
// must with cert_file, rather than only a token, as it must with cert_dir.
func (k *KeyURI) NamesKey() bool { return k.Object != "" || k.ID != nil }

// String renders the URI canonically: path attributes in RFC 7512 order,
// then module-path and pin-source, every value percent-encoded where the
// RFC requires it. ParseKeyURI(k.String()) gives back an equal KeyURI.
func (k *KeyURI) String() string {
	var path, query []string
	add := func(list *[]string, name, v string) {
		if v != "" {
			*list = append(*list, name+"="+pctEncode(v, name == "module-path" || name == "pin-source"))
		}
	}
	add(&path, "token", k.Token)
	add(&path, "manufacturer", k.Manufacturer)
	add(&path, "serial", k.Serial)
	add(&path, "model", k.Model)
	if k.SlotID != nil {
		path = append(path, "slot-id="+strconv.FormatUint(uint64(*k.SlotID), 10))
	}
	add(&path, "object", k.Object)
	if k.ID != nil {
		var b strings.Builder
		for _, c := range k.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		path = append(path, "id="+b.String())
	}
	path = append(path, "type=private")
	add(&query, "module-path", k.ModulePath)
	if k.PINFile != "" {
		add(&query, "pin-source", "file:"+k.PINFile)
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

// keyURIExample is what every refusal shows.
const keyURIExample = "pkcs11:token=payrails;object=client-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin"

// ErrPINInURI is wrapped by ParseKeyURI's error for a URI carrying
// pin-value: a PIN in a URI ends up in argv, shell history and process
// listings.
var ErrPINInURI = errors.New("the PIN must not be written in the URI")

// ParseKeyURI parses an RFC 7512 PKCS#11 URI naming a private key or a
// token. It refuses what the proxy cannot honour, each time saying what to
// write instead: pin-value (the PIN comes from pin-source=file:PATH or
// PAYRAILS_PROXY_PKCS11_PIN), a missing or relative module-path,
// module-name, a type other than private, repeated or unknown attributes,
// and bad percent-encoding. The error never repeats a pin-value.
func ParseKeyURI(s string) (*KeyURI, error) {
	s = strings.TrimSpace(s)
	rest, ok := cutPrefixFold(s, "pkcs11:")
	if !ok {
		return nil, fmt.Errorf("a key URI starts with pkcs11: (RFC 7512), such as %s", keyURIExample)
	}
	pathPart, queryPart, _ := strings.Cut(rest, "?")
	k := &KeyURI{}
	seen := map[string]bool{}
	// pin-value is looked for first, so that no other error can quote it.
	for q := range strings.SplitSeq(queryPart, "&") {
		if name, _, _ := strings.Cut(q, "="); strings.EqualFold(name, "pin-value") {
			return nil, fmt.Errorf("%w (pin-value): a PIN in a URI ends up in argv, shell history and logs; put it "+
				"in a file and write pin-source=file:/run/secrets/hsm-pin, or set PAYRAILS_PROXY_PKCS11_PIN", ErrPINInURI)
		}
	}
	for attr := range strings.SplitSeq(pathPart, ";") {
		if attr == "" {
			continue
		}
		if err := k.pathAttr(attr, seen); err != nil {
			return nil, err
		}
	}
	for attr := range strings.SplitSeq(queryPart, "&") {
		if attr == "" {
			continue
		}
		if err := k.queryAttr(attr, seen); err != nil {
			return nil, err
		}
	}
	switch {
	case k.ModulePath == "":
		return nil, fmt.Errorf("the URI has no module-path: add ?module-path=/path/to/the/pkcs11/library.so (for "+
			"SoftHSM2 /usr/lib/softhsm/libsofthsm2.so), as in %s", keyURIExample)
	case k.Token == "" && k.Serial == "" && k.SlotID == nil:
		return nil, fmt.Errorf("the URI names no token: add token=LABEL (the label given to softhsm2-util "+
			"--init-token or the HSM's partition), serial= or slot-id=, as in %s", keyURIExample)
	}
	return k, nil
}

// pathAttr sets one path attribute (RFC 7512 §2.3 pk11-path-attr).
func (k *KeyURI) pathAttr(attr string, seen map[string]bool) error {
	name, raw, hasValue := strings.Cut(attr, "=")
	name = strings.ToLower(name)
	if !hasValue {
		return fmt.Errorf("%q is not an attribute of the form name=value; write the URI like %s", attr, keyURIExample)
	}
	if seen[name] {
		return fmt.Errorf("attribute %s is given twice; give it once", name)
	}
	seen[name] = true
	v, err := pctDecode(raw)
	if err != nil {
		return fmt.Errorf("attribute %s: %w", name, err)
	}
	switch name {
	case "token":
		k.Token = v
	case "manufacturer":
		k.Manufacturer = v
	case "serial":
		k.Serial = v
	case "model":
		k.Model = v
	case "object":
		k.Object = v
	case "id":
		k.ID = []byte(v)
	case "slot-id":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("slot-id %q is not a decimal slot number; write slot-id=0, or name the token with token=LABEL", v)
		}
		id := uint(n)
		k.SlotID = &id
	case "type":
		if v != "private" {
			return fmt.Errorf("type=%s names no private key: the client certificate's key is a private key, so write "+
				"type=private or leave type out", v)
		}
	case "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer":
		return fmt.Errorf("attribute %s is not supported; select the library with module-path= and the token with "+
			"token=, serial= or slot-id=", name)
	default:
		return unknownAttr(name, []string{"token", "manufacturer", "serial", "model", "object", "id", "slot-id", "type"})
	}
	return nil
}

// queryAttr sets one query attribute (RFC 7512 §2.3 pk11-qattr).
func (k *KeyURI) queryAttr(attr string, seen map[string]bool) error {
	name, raw, hasValue := strings.Cut(attr, "=")
	name = strings.ToLower(name)
	if !hasValue {
		return fmt.Errorf("%q is not an attribute of the form name=value; write the URI like %s", attr, keyURIExample)
	}
	if seen[name] {
		return fmt.Errorf("attribute %s is given twice; give it once", name)
	}
	seen[name] = true
	v, err := pctDecode(raw)
	if err != nil {
		return fmt.Errorf("attribute %s: %w", name, err)
	}
	switch name {
	case "module-path":
		if !filepath.IsAbs(v) {
			return fmt.Errorf("module-path %q is not an absolute path; give the library's full path, such as "+
				"/usr/lib/softhsm/libsofthsm2.so", v)
		}
		k.ModulePath = filepath.Clean(v)
	case "module-name":
		return fmt.Errorf("module-name is not supported (it leaves the library to a search path); give module-path= " +
			"with the library's full path, such as /usr/lib/softhsm/libsofthsm2.so")
	case "pin-source":
		p, ok := strings.CutPrefix(v, "file:")
		if ok {
			p = strings.TrimPrefix(p, "//") // file:///run/x and file:/run/x are the same file
			if strings.HasPrefix(p, "localhost/") {
				p = strings.TrimPrefix(p, "localhost")
			}
		}
		if !ok || !filepath.IsAbs(p) {
			return fmt.Errorf("pin-source %q is not supported; write pin-source=file:/ABSOLUTE/PATH (a file holding "+
				"the PIN), or leave it out and set PAYRAILS_PROXY_PKCS11_PIN", v)
		}
		k.PINFile = filepath.Clean(p)
	default:
		return unknownAttr(name, []string{"module-path", "pin-source"})
	}
	return nil
}

// unknownAttr refuses an attribute the proxy does not know, vendor ones
// (x-...) included: honouring a URI only in part could select another key.
func unknownAttr(name string, known []string) error {
	if best := closest(name, known); best != "" {
		return fmt.Errorf("unknown attribute %q; did you mean %s? (known: %s)", name, best, strings.Join(known, ", "))
	}
	return fmt.Errorf("unknown attribute %q (known: %s)", name, strings.Join(known, ", "))
}

// closest returns the known name nearest to name by edit distance, if near.
func closest(name string, known []string) string {
	if len(name) > maxSuggestInput {
		return ""
	}
	best, dist := "", maxSuggestDistance+1
	for _, k := range known {
		if d := levenshtein.Distance(name, k); d < dist {
			best, dist = k, d
		}
	}
	return best
}

// pctDecode undoes RFC 3986 percent-encoding. Unlike url.PathUnescape it
// keeps '+' as it is and refuses a bare '%'.
func pctDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", fmt.Errorf("bad percent-encoding near %q; write a literal %% as %%25", s[i:min(i+3, len(s))])
		}
		b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// pctEncode encodes everything but RFC 3986 unreserved characters (and
// '/' and ':' in paths, which RFC 7512 allows in query values).
func pctEncode(s string, path bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		unreserved := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			slices.Contains([]byte("-._~"), c) || path && (c == '/' || c == ':')
		if unreserved {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
