package levenshtein

import "testing"

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"listen", "listen", 0},
		{"listne", "listen", 2},     // a transposition is two edits
		{"cert_dri", "cert_dir", 2}, // likewise
		{"admin_listen", "admin_listn", 1},
		{"GERMNY", "GERMANY", 1},
		{"kitten", "sitting", 3},
		{"CURAÇAO", "CURACAO", 1}, // by rune: Ç is one character, two bytes
		{"ÅLAND", "ALAND", 1},
		{"日本", "日本国", 1},
	} {
		if got := Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Distance(tt.b, tt.a); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}
