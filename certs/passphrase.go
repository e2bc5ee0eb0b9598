package certs

import (
	"bytes"
	"fmt"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
)

// Passphrase says where a key's passphrase comes from: a file (read on every
// load, so it can be rotated with the key) or a value taken from the
// environment. The zero value means no passphrase. Never from argv.
type Passphrase struct {
	File  string // file holding the passphrase; only its first line counts, as with OpenSSL -passin file:
	Value []byte // from an environment variable; used when File is ""
	Env   string // the environment variable Value came from, for messages
}

// passphrase reads a Passphrase at most once per load.
type passphrase struct {
	src     Passphrase
	read    bool
	secret  []byte
	err     error
	warning string // the file is readable by others (safefile.Warning); "" otherwise
}

// maxPassphraseFile bounds a passphrase file: one line is used.
const maxPassphraseFile = 64 << 10

func (p *passphrase) get() ([]byte, error) {
	if p == nil {
		return nil, nil
	}
	if !p.read {
		p.read = true
		p.secret, p.err = p.load()
	}
	return p.secret, p.err
}

func (p *passphrase) load() ([]byte, error) {
	if p.src.File == "" {
		return p.src.Value, nil
	}
	data, st, err := safefile.Read(p.src.File, maxPassphraseFile)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase file %q: %w", p.src.File, err)
	}
	p.warning = safefile.Warning("the passphrase file", p.src.File, st)
	// Editors and `echo` add a newline that is not part of the passphrase;
	// OpenSSL's -passin file: reads only the first line, so do the same.
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		data = data[:i]
	}
	return data, nil
}

// origin names where the passphrase came from, for messages.
func (p *passphrase) origin() string {
	switch {
	case p == nil:
		return "the passphrase"
	case p.src.File != "":
		return fmt.Sprintf("the passphrase in %s", p.src.File)
	case p.src.Env != "":
		return fmt.Sprintf("the passphrase from %s", p.src.Env)
	default:
		return "the passphrase"
	}
}
