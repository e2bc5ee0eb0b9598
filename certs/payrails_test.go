package certs

import (
	"errors"
	"strings"
	"testing"
)

func TestAPIHost(t *testing.T) {
	tests := []struct {
		company string
		env     Environment
		want    string // "" means an error
	}{
		{"acme", EnvLive, "api.acme.payrails.io"},
		{"acme", EnvStaging, "acme-api.staging.payrails.io"},
		{"Acme", EnvLive, "api.acme.payrails.io"},
		{"acme-eu2", EnvStaging, "acme-eu2-api.staging.payrails.io"},
		{"", EnvLive, ""},
		{"acme.io", EnvLive, ""},
		{"ac_me", EnvLive, ""},
		{"-acme", EnvLive, ""},
		{"acme-", EnvStaging, ""},
		{strings.Repeat("a", 60), EnvStaging, ""}, // "<company>-api" would pass 63 characters
		{"acme", "production", ""},
	}
	for _, tt := range tests {
		t.Run(tt.company+"/"+string(tt.env), func(t *testing.T) {
			got, err := APIHost(tt.company, tt.env)
			if got != tt.want || (err != nil) != (tt.want == "") {
				t.Fatalf("APIHost(%q, %q) = %q, %v; want %q", tt.company, tt.env, got, err, tt.want)
			}
			if err != nil && tt.env != "production" && !errors.Is(err, ErrBadCompany) {
				t.Errorf("error %v does not wrap ErrBadCompany", err)
			}
		})
	}
}

func TestParseEnvironment(t *testing.T) {
	for in, want := range map[string]Environment{"live": EnvLive, "LIVE": EnvLive, " staging ": EnvStaging} {
		if got, err := ParseEnvironment(in); err != nil || got != want {
			t.Errorf("ParseEnvironment(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseEnvironment("prod"); err == nil || !strings.Contains(err.Error(), "live or staging") {
		t.Errorf("ParseEnvironment(prod) error = %v, want advice to use live or staging", err)
	}
}

func TestParsePayrailsHost(t *testing.T) {
	tests := []struct {
		host    string
		ok      bool
		company string
		env     Environment
	}{
		{"api.acme.payrails.io", true, "acme", EnvLive},
		{"API.Acme.Payrails.IO", true, "acme", EnvLive},
		{"acme-api.staging.payrails.io", true, "acme", EnvStaging},
		{"acme-eu-api.staging.payrails.io", true, "acme-eu", EnvStaging},
		{"api.acme.payrails.io.evil.com", false, "", ""},
		{"api.acme.payrails.io.", false, "", ""},
		{"api.payrails.io", false, "", ""},
		{"acme-api.payrails.io", false, "", ""},
		{"api.a.b.payrails.io", false, "", ""},
		{"-api.staging.payrails.io", false, "", ""},
		{"acme.staging.payrails.io", false, "", ""},
		{"api.acme.payrails.test", false, "", ""},
		{"api.ac_me.payrails.io", false, "", ""},
		{"", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			h, ok := ParsePayrailsHost(tt.host)
			if ok != tt.ok || h.Company != tt.company || h.Env != tt.env {
				t.Fatalf("ParsePayrailsHost(%q) = %+v, %v; want company %q env %q ok %v", tt.host, h, ok, tt.company, tt.env, tt.ok)
			}
			if ok && h.Host != strings.ToLower(tt.host) {
				t.Errorf("Host = %q, want %q", h.Host, strings.ToLower(tt.host))
			}
		})
	}
	// Every host APIHost makes is recognised as what it was made for.
	for _, env := range []Environment{EnvLive, EnvStaging} {
		host, err := APIHost("acme", env)
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := ParsePayrailsHost(host); !ok || h.Env != env || h.Company != "acme" {
			t.Errorf("round trip of %s: %+v, %v", host, h, ok)
		}
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct{ in, want, errPart string }{
		{"api.acme.payrails.io", "api.acme.payrails.io", ""},
		{" API.Acme.Payrails.IO ", "api.acme.payrails.io", ""},
		{"https://api.acme.payrails.io", "", "without https://"},
		{"api.acme.payrails.io:443", "", "without https://"},
		{"localhost", "", "not a full host name"},
		{"", "", "not a full host name"},
		{"api..payrails.io", "", "not a DNS label"},
		{"api.ac_me.payrails.io", "", "not a DNS label"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeHost(tt.in)
			if got != tt.want {
				t.Errorf("NormalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.errPart == "" && err != nil || tt.errPart != "" && (err == nil || !strings.Contains(err.Error(), tt.errPart)) {
				t.Errorf("NormalizeHost(%q) error = %v, want one containing %q", tt.in, err, tt.errPart)
			}
		})
	}
}
