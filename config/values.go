package config

import (
	"errors"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// durationExample is appended to every bad-duration message.
const durationExample = "use Go duration syntax such as 250ms, 30s or 1m30s"

// duration parses s (or returns def when unset). Durations must be > 0, or
// >= 0 when zeroOK.
func (b *values) duration(s setting, def time.Duration, zeroOK bool) time.Duration {
	if !s.set {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(s.value))
	switch {
	case err != nil:
		b.addCause(s.at, err, "%q is not a duration; %s", s.value, durationExample)
	case d < 0 || (d == 0 && !zeroOK):
		bound := "greater than zero"
		if zeroOK {
			bound = "zero or more"
		}
		b.add(s.at, "%q must be %s; %s", s.value, bound, durationExample)
	}
	return d
}

// boolean parses a true/false setting; unset is def.
func (b *values) boolean(s setting, def bool) bool {
	if !s.set {
		return def
	}
	switch {
	case strings.EqualFold(s.value, "true"):
		return true
	case strings.EqualFold(s.value, "false"):
		return false
	}
	b.add(s.at, "%q is not a boolean; write true or false", s.value)
	return false
}

// integer parses a whole number in lo..hi (or returns def when unset).
func (b *values) integer(s setting, def, lo, hi int) int {
	if !s.set {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(s.value))
	switch {
	case err != nil:
		b.add(s.at, "%q is not a whole number; write a number from %d to %d", s.value, lo, hi)
	case n < lo || n > hi:
		b.add(s.at, "%d is out of range; write a number from %d to %d", n, lo, hi)
	}
	return n
}

// sizeUnits are the suffixes size accepts, binary multiples only: "MB"
// would leave the reader guessing between 10^6 and 2^20.
var sizeUnits = []struct {
	suffix string
	factor int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// size parses a byte count such as 1MiB, 512KiB or 65536 (or returns def
// when unset); it must be in 0..max.
func (b *values) size(s setting, def, max int64) int64 {
	if !s.set {
		return def
	}
	v := strings.TrimSpace(s.value)
	factor := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(v, u.suffix); ok {
			v, factor = strings.TrimSpace(num), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > max/factor {
		b.add(s.at, "%q is not a size from 0 to %dMiB; write a whole number of bytes with an optional unit KiB, MiB or GiB, such as 1MiB or 512KiB",
			s.value, max>>20)
		return def
	}
	return n * factor
}

// headerNames parses a list of HTTP header names into canonical form (or
// returns def when unset). An empty list is allowed.
func (b *values) headerNames(l settingList, def []string) []string {
	if !l.set {
		return def
	}
	out := make([]string, 0, len(l.items))
	for _, s := range l.items {
		name := strings.TrimSpace(s.value)
		if !validHeaderName(name) {
			b.add(s.at, "%q is not an HTTP header name; use letters, digits and '-', such as X-Idempotency-Key", s.value)
			continue
		}
		out = append(out, textproto.CanonicalMIMEHeaderKey(name))
	}
	return out
}

// validHeaderName reports whether name is an RFC 9110 §5.1 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// allowCIDRs parses access.allow_cidrs, defaulting to loopback only.
func (b *values) allowCIDRs(l settingList) []netip.Prefix {
	if !l.set {
		return DefaultAllowCIDRs()
	}
	if len(l.items) == 0 {
		b.add(l.at, "the list is empty, so no client could use the proxy; list the client networks, e.g. [127.0.0.1/32, 10.0.0.0/8]")
		return nil
	}
	out := make([]netip.Prefix, 0, len(l.items))
	for _, s := range l.items {
		p, err := parsePrefix(strings.TrimSpace(s.value))
		if err != nil {
			b.addCause(s.at, err, "%q is not an IP address or CIDR prefix (%v); write it like 10.0.0.0/8, 10.1.2.3 or fd00::/8", s.value, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// parsePrefix accepts a CIDR prefix or a bare IP (as /32 or /128), masked.
func parsePrefix(v string) (netip.Prefix, error) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("zoned addresses are not supported")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// parsePort parses a decimal port in lo..65535. Service names ("https")
// are refused: the value must mean the same on every machine.
func parsePort(s string, lo int) (int, bool) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= lo && n <= 65535
}

// addrErrText is the useful part of a net.SplitHostPort error.
func addrErrText(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}
