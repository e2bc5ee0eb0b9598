package certs

import (
	"errors"
	"fmt"
	"strings"
)

// Environment is a Payrails environment. Each has its own API host, and
// certificates issued for one are not accepted by the other.
type Environment string

// Payrails environments.
const (
	EnvLive    Environment = "live"
	EnvStaging Environment = "staging"
)

// payrailsDomain is the parent of every Payrails API host.
const payrailsDomain = "payrails.io"

// ParseEnvironment accepts "live" or "staging", in any case.
func ParseEnvironment(s string) (Environment, error) {
	switch Environment(strings.ToLower(strings.TrimSpace(s))) {
	case EnvLive:
		return EnvLive, nil
	case EnvStaging:
		return EnvStaging, nil
	}
	return "", fmt.Errorf("environment %q: use live or staging (production is called live)", s)
}

// ErrBadCompany is wrapped by the errors of NormalizeCompany.
var ErrBadCompany = errors.New("not a valid company name")

// NormalizeCompany returns company in lower case if it can be the company
// part of a Payrails API host: one DNS label (RFC 1123: letters, digits and
// hyphens, not starting or ending with a hyphen), short enough that
// "<company>-api" is a label too.
func NormalizeCompany(company string) (string, error) {
	c := strings.ToLower(strings.TrimSpace(company))
	switch {
	case c == "":
		return "", fmt.Errorf("%w: it is empty; give the company part of your Payrails API host, "+
			"e.g. acme for api.acme.payrails.io", ErrBadCompany)
	case strings.Contains(c, "."):
		return "", fmt.Errorf("%w: %q holds a dot; give only the company part of the host, e.g. acme for "+
			"api.acme.payrails.io (or give the whole host as the common name)", ErrBadCompany, company)
	case !isCompany(c):
		return "", fmt.Errorf("%w: %q must be one DNS label: letters, digits and hyphens, not starting or "+
			"ending with a hyphen, at most 59 characters; use the name in your Payrails API host", ErrBadCompany, company)
	}
	return c, nil
}

// APIHost returns a company's API host in an environment, as Payrails'
// guide gives it: live api.<company>.payrails.io, staging
// <company>-api.staging.payrails.io. It is the Common Name of the CSR.
func APIHost(company string, env Environment) (string, error) {
	c, err := NormalizeCompany(company)
	if err != nil {
		return "", err
	}
	switch env {
	case EnvLive:
		return "api." + c + "." + payrailsDomain, nil
	case EnvStaging:
		return c + "-api.staging." + payrailsDomain, nil
	}
	return "", fmt.Errorf("environment %q: use live or staging", env)
}

// PayrailsHost is a host name recognised as a Payrails API host.
type PayrailsHost struct {
	Host    string      `json:"host"` // lower case
	Company string      `json:"company"`
	Env     Environment `json:"environment"`
}

// String describes the host for people: "Payrails live API of company acme".
func (h PayrailsHost) String() string {
	return fmt.Sprintf("Payrails %s API of company %s", h.Env, h.Company)
}

// ParsePayrailsHost reports whether name is a Payrails API host, and for
// which environment and company. Matching is exact apart from case:
// look-alikes such as api.acme.payrails.io.example.com are not hosts.
func ParsePayrailsHost(name string) (PayrailsHost, bool) {
	host := strings.ToLower(name)
	labels := strings.Split(host, ".")
	if len(labels) != 4 || labels[2]+"."+labels[3] != payrailsDomain {
		return PayrailsHost{}, false
	}
	if labels[0] == "api" && isCompany(labels[1]) {
		return PayrailsHost{Host: host, Company: labels[1], Env: EnvLive}, true
	}
	company, ok := strings.CutSuffix(labels[0], "-api")
	if ok && labels[1] == "staging" && isCompany(company) {
		return PayrailsHost{Host: host, Company: company, Env: EnvStaging}, true
	}
	return PayrailsHost{}, false
}

// isCompany reports whether s can be the company part of both hosts:
// a label on its own (live) and with "-api" appended (staging).
func isCompany(s string) bool { return isDNSLabel(s) && len(s)+len("-api") <= 63 }

// isDNSLabel reports whether s is a lower-case RFC 1123 label.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// NormalizeHost returns name in lower case if it is a DNS host name (the
// Common Name of a CSR), or an error that says what is wrong with it.
func NormalizeHost(name string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(name))
	if strings.Contains(h, "://") || strings.ContainsAny(h, "/:") {
		return "", fmt.Errorf("common name %q: give the host name only, without https:// or a path or port, "+
			"e.g. api.acme.payrails.io", name)
	}
	labels := strings.Split(h, ".")
	if len(h) > 253 || len(labels) < 2 {
		return "", fmt.Errorf("common name %q: not a full host name; Payrails' are api.<company>.payrails.io "+
			"(live) and <company>-api.staging.payrails.io (staging)", name)
	}
	for _, l := range labels {
		if !isDNSLabel(l) {
			return "", fmt.Errorf("common name %q: %q is not a DNS label (letters, digits and hyphens, "+
				"not starting or ending with a hyphen)", name, l)
		}
	}
	return h, nil
}
