package certs

// ISO 3166-1 countries: csr validates the subject's country against the
// table (countries_table.go) and suggests from it.

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/levenshtein"
)

// Country is one ISO 3166-1 entry.
type Country struct {
	Code   string // alpha-2, what goes in a certificate subject: "DE"
	Alpha3 string // alpha-3: "DEU"
	Name   string // short English name: "Germany"
	// other holds further names to match suggestions against (the ISO
	// short name when Name is the common one, the official name),
	// separated by "|".
	other string
}

// LookupCountry returns the country with the given alpha-2 code (any case).
func LookupCountry(code string) (Country, bool) {
	code = strings.ToUpper(strings.TrimSpace(code))
	i, ok := slices.BinarySearchFunc(countries, code, func(c Country, code string) int {
		return strings.Compare(c.Code, code)
	})
	if !ok {
		return Country{}, false
	}
	return countries[i], true
}

// CountryError is a country that is not an ISO 3166-1 alpha-2 code, with
// the codes the operator probably meant.
type CountryError struct {
	Input       string
	Suggestions []Country // best first; empty when nothing is close
}

func (e *CountryError) Error() string {
	msg := fmt.Sprintf("country %q is not an ISO 3166-1 alpha-2 code", e.Input)
	switch len(e.Suggestions) {
	case 0:
		return msg + ": give the two-letter code of the country, such as DE, FR, GB, NL or US"
	case 1:
		c := e.Suggestions[0]
		return fmt.Sprintf("%s; did you mean %s (%s)?", msg, c.Code, c.Name)
	}
	var parts []string
	for _, c := range e.Suggestions {
		parts = append(parts, fmt.Sprintf("%s (%s)", c.Code, c.Name))
	}
	return fmt.Sprintf("%s; did you mean one of %s?", msg, strings.Join(parts, ", "))
}

// NormalizeCountry returns the ISO 3166-1 alpha-2 code for input, upper
// case, or a *CountryError listing near matches: "UK" suggests GB, "GER"
// and "DEU" suggest DE, "Germany" suggests DE.
func NormalizeCountry(input string) (string, error) {
	code := strings.ToUpper(strings.TrimSpace(input))
	if c, ok := LookupCountry(code); ok {
		return c.Code, nil
	}
	return "", &CountryError{Input: input, Suggestions: SuggestCountries(input)}
}

// maxSuggestions bounds the list a wrong country gets.
const maxSuggestions = 6

// SuggestCountries returns the countries input probably means: a known
// alias (UK, EL, IOC codes...), an alpha-3 code, a name or a word of a name
// it starts, a name it misspells, or its two letters swapped.
func SuggestCountries(input string) []Country {
	s := strings.ToUpper(strings.TrimSpace(input))
	if s == "" {
		return nil
	}
	var out []Country
	add := func(code string) {
		c, ok := LookupCountry(code)
		if ok && !slices.Contains(out, c) && len(out) < maxSuggestions {
			out = append(out, c)
		}
	}
	if code, ok := countryAliases[s]; ok {
		add(code)
	}
	for _, c := range countries {
		if c.Alpha3 == s {
			add(c.Code)
		}
	}
	if len(s) == 2 {
		add(string([]byte{s[1], s[0]}))
	}
	if len(s) >= 3 {
		for _, match := range []func(name, s string) bool{nameIs, nameWordStarts, nameMisspelt} {
			for _, c := range countries {
				if slices.ContainsFunc(c.names(), func(name string) bool { return match(name, s) }) {
					add(c.Code)
				}
			}
		}
	}
	return out
}

// names returns c's names in upper case.
func (c Country) names() []string {
	names := []string{strings.ToUpper(c.Name)}
	if c.other != "" {
		for _, n := range strings.Split(c.other, "|") {
			names = append(names, strings.ToUpper(n))
		}
	}
	return names
}

func nameIs(name, s string) bool { return name == s }

func nameWordStarts(name, s string) bool {
	for _, w := range strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) }) {
		if strings.HasPrefix(w, s) {
			return true
		}
	}
	return false
}

// nameMisspelt allows one typo in a short name and two in a longer one.
func nameMisspelt(name, s string) bool {
	limit := 1
	if len(s) >= 6 {
		limit = 2
	}
	return len(s) >= 4 && levenshtein.Distance(name, s) <= limit
}

// countryAliases are codes and names people use that are not ISO 3166-1
// alpha-2 codes or names.
var countryAliases = map[string]string{
	"UK":          "GB", // reserved by ISO at the UK's request; the UK's code is GB
	"EL":          "GR", // the EU's code for Greece
	"ENGLAND":     "GB",
	"SCOTLAND":    "GB",
	"WALES":       "GB",
	"BRITAIN":     "GB",
	"ENG":         "GB",
	"GER":         "DE", // IOC and FIFA codes, often typed for the alpha-2 code
	"DEUTSCHLAND": "DE",
	"SUI":         "CH",
	"NED":         "NL",
	"HOLLAND":     "NL",
	"POR":         "PT",
	"DEN":         "DK",
	"CRO":         "HR",
	"GRE":         "GR",
	"RSA":         "ZA",
	"UAE":         "AE",
	"KSA":         "SA",
	"TURKEY":      "TR",
	"AMERICA":     "US",
}
