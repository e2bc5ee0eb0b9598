package certs

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeCountry(t *testing.T) {
	tests := []struct {
		input     string
		want      string   // "" means an error
		suggested []string // the codes suggested, best first
		message   string   // part of the error message
	}{
		{input: "DE", want: "DE"},
		{input: "de", want: "DE"},
		{input: " gb ", want: "GB"},
		{input: "GER", suggested: []string{"DE"}, message: "did you mean DE (Germany)?"},
		{input: "UK", suggested: []string{"GB"}, message: "did you mean GB (United Kingdom)?"},
		{input: "uk", suggested: []string{"GB"}},
		{input: "EL", suggested: []string{"GR"}},
		{input: "DEU", suggested: []string{"DE"}},
		{input: "USA", suggested: []string{"US"}},
		{input: "Germany", suggested: []string{"DE"}},
		{input: "germny", suggested: []string{"DE"}},
		{input: "ED", suggested: []string{"DE"}},
		{input: "Korea", suggested: []string{"KP", "KR"}, message: "did you mean one of"},
		{input: "AUS", suggested: []string{"AU", "AT"}},
		{input: "Turkey", suggested: []string{"TR"}},
		{input: "XX", suggested: nil, message: "such as DE, FR, GB, NL or US"},
		{input: "", suggested: nil},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			got, err := NormalizeCountry(tt.input)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("NormalizeCountry(%q) = %q, %v; want %q", tt.input, got, err, tt.want)
				}
				return
			}
			var ce *CountryError
			if !errors.As(err, &ce) {
				t.Fatalf("NormalizeCountry(%q) = %q, %v; want a *CountryError", tt.input, got, err)
			}
			var codes []string
			for _, c := range ce.Suggestions {
				codes = append(codes, c.Code)
			}
			if !slices.Equal(codes, tt.suggested) {
				t.Errorf("suggestions for %q = %v, want %v", tt.input, codes, tt.suggested)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("message %q does not contain %q", err, tt.message)
			}
		})
	}
}

// TestCountryTable checks the ISO 3166-1 table itself: complete, sorted
// (LookupCountry bisects it) and well formed.
func TestCountryTable(t *testing.T) {
	if got, want := len(countries), 249; got != want {
		t.Errorf("%d countries, want %d (ISO 3166-1 has 249 codes)", got, want)
	}
	alpha2, alpha3 := regexp.MustCompile(`^[A-Z]{2}$`), regexp.MustCompile(`^[A-Z]{3}$`)
	seen3 := map[string]bool{}
	for i, c := range countries {
		if !alpha2.MatchString(c.Code) || !alpha3.MatchString(c.Alpha3) || c.Name == "" {
			t.Errorf("malformed entry %+v", c)
		}
		if i > 0 && countries[i-1].Code >= c.Code {
			t.Errorf("not sorted at %s after %s", c.Code, countries[i-1].Code)
		}
		if seen3[c.Alpha3] {
			t.Errorf("alpha-3 %s twice", c.Alpha3)
		}
		seen3[c.Alpha3] = true
		if got, ok := LookupCountry(strings.ToLower(c.Code)); !ok || got.Code != c.Code {
			t.Errorf("LookupCountry(%q) = %+v, %v", c.Code, got, ok)
		}
	}
	for alias, code := range countryAliases {
		if _, ok := LookupCountry(code); !ok {
			t.Errorf("alias %s points at unknown code %s", alias, code)
		}
		if _, ok := LookupCountry(alias); ok {
			t.Errorf("alias %s is itself a valid code and would never be suggested", alias)
		}
	}
}
