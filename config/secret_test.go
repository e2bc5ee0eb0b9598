package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestSecretRedaction(t *testing.T) {
	const value = "hunter2-very-secret"
	s := NewSecret(value)
	cfg := &Config{Upstreams: []Upstream{{Name: "live", KeyPassphrase: s, Token: Token{ClientID: "id", ClientSecret: s}}}}

	jsonSecret, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	jsonConfig, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	yamlConfig, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := s.MarshalText()
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "secret", s, "config", cfg)

	tests := []struct {
		name, got, want string
	}{
		{"%v", fmt.Sprintf("%v", s), "[redacted]"},
		{"%+v", fmt.Sprintf("%+v", s), "[redacted]"},
		{"%#v", fmt.Sprintf("%#v", s), "[redacted]"},
		{"%s", fmt.Sprintf("%s", s), "[redacted]"},
		{"%q", fmt.Sprintf("%q", s), `"[redacted]"`},
		{"%x", fmt.Sprintf("%x", s), "[redacted]"},
		{"%d", fmt.Sprintf("%d", s), "[redacted]"},
		{"String", s.String(), "[redacted]"},
		{"GoString", s.GoString(), "[redacted]"},
		{"json.Marshal", string(jsonSecret), `"[redacted]"`},
		{"MarshalText", string(text), "[redacted]"},
		{"config %v", fmt.Sprintf("%v", cfg), "[redacted]"},
		{"config %+v", fmt.Sprintf("%+v", cfg), "KeyPassphrase:[redacted]"},
		{"config %#v", fmt.Sprintf("%#v", *cfg), "ClientSecret:[redacted]"},
		{"config json", string(jsonConfig), `"KeyPassphrase":"[redacted]"`},
		{"config yaml", string(yamlConfig), "keypassphrase: '[redacted]'"},
		{"slog", logged.String(), "secret=[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.got, value) {
				t.Fatalf("got %q, which leaks the secret", tt.got)
			}
			if !strings.Contains(tt.got, tt.want) {
				t.Errorf("got %q, want it to contain %q", tt.got, tt.want)
			}
		})
	}
	if got := s.Value(); got != value {
		t.Errorf("Value() = %q, want %q", got, value)
	}
	if !s.IsSet() {
		t.Errorf("IsSet() = false, want true")
	}
}

func TestSecretEmpty(t *testing.T) {
	var zero Secret
	if zero != NewSecret("") {
		t.Errorf("NewSecret(\"\") differs from the zero Secret")
	}
	if zero.IsSet() {
		t.Errorf("zero IsSet() = true, want false")
	}
	js, _ := json.Marshal(zero)
	for name, got := range map[string]string{
		"%v": fmt.Sprintf("%v", zero), "String": zero.String(), "json": string(js),
	} {
		want := ""
		if name == "json" {
			want = `""`
		}
		if got != want {
			t.Errorf("%s of the empty secret = %q, want %q", name, got, want)
		}
	}
}
