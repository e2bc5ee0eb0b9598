package config

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// durationExample is appended to every bad-duration message.
const durationExample = "use Go duration syntax such as 250ms, 30s or 1m30s"

// duration parses s (or returns def when unset). Durations must be > 0, or
// >= 0 when zeroOK.
func (b *builder) duration(s setting, key string, def time.Duration, zeroOK bool) time.Duration {
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

// boolean parses a true/false setting; unset is false.
func (b *builder) boolean(s setting) bool {
	if !s.set {
		return false
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

// allowCIDRs parses access.allow_cidrs, defaulting to loopback only.
func (b *builder) allowCIDRs(l cidrList) []netip.Prefix {
	if !l.set {
		return defaultAllowCIDRs()
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
