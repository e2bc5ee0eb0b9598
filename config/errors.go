package config

import (
	"strconv"
	"strings"
)

// sourceDefaults is Error.Source for a problem with a default value.
const sourceDefaults = "defaults"

// Error is one configuration problem, naming where the value came from.
//
// Error values are created by this package and must not be modified. An Error
// may wrap an underlying cause (for example an *fs.PathError from checking a
// file), reachable with errors.Is and errors.As.
type Error struct {
	// Source is where the offending value came from: "file /etc/x.yaml",
	// "flag --upstream", "env PAYRAILS_PROXY_UPSTREAM", or "defaults".
	Source string
	// Key is the configuration key as the user would write it in the file:
	// "upstreams[1].url", "reload.debounce", "listen". Values from flags and
	// environment variables are named by the key they set. "" when the
	// problem is about the whole file.
	Key string
	// Line is the line in the YAML file when known, else 0.
	Line int
	// Reason says what is wrong and what to do: lowercase, no trailing
	// period, never containing a secret.
	Reason string

	err error // optional cause, for errors.Is/As
}

// Error formats the problem as "SOURCE, line N: KEY: REASON", leaving out
// the parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		b.WriteString(", line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	for _, part := range []string{e.Key, e.Reason} {
		if part == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(part)
	}
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.err }

// Errors collects every problem found; validation does not stop at the first
// one. Load and Parse return a non-empty *Errors on failure. The order is the
// order in which problems were found (roughly file order); duplicates are
// removed.
type Errors []*Error

// Error lists the problems, one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so errors.As(err, &target) with a
// target of type *Error finds the first one, and errors.Is sees every cause.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, err := range e {
		out[i] = err
	}
	return out
}

// As lets errors.As find the list whether the caller's target is an Errors
// or an *Errors (Load returns *Errors).
func (e *Errors) As(target any) bool {
	if t, ok := target.(*Errors); ok {
		*t = *e
		return true
	}
	return false
}

// collector accumulates Errors, dropping exact duplicates (the same YAML node
// can be reached twice through an alias or merge key).
type collector struct {
	errs Errors
	seen map[string]bool
}

func (c *collector) add(e *Error) {
	k := e.Error()
	if c.seen[k] {
		return
	}
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[k] = true
	c.errs = append(c.errs, e)
}

// err returns nil when nothing was collected, else an *Errors.
func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	errs := c.errs
	return &errs
}
