package otlp

import (
	"testing"
	"unicode/utf8"
)

// FuzzResponse: the readers of a collector's answer never panic, whatever
// it sends, and what partialSuccess reads it reads again from its own
// encoding.
func FuzzResponse(f *testing.F) {
	f.Add(partial(3, "spans too old"))
	f.Add(partial(0, ""))
	f.Add(status("unknown field"))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x80})                  // a length past the end
	f.Add([]byte{0x0a, 0x02, 0x08, 0xff})      // a truncated varint
	f.Add(append(partial(1, "a"), 0x1a, 0x00)) // an unknown field after it
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = statusMessage(b)
		pe, err := partialSuccess(b)
		if err != nil || pe == nil {
			return
		}
		again, err := partialSuccess(partial(pe.Rejected, pe.Message))
		if err != nil || again == nil || *again != *pe {
			t.Errorf("%+v read back as %+v, %v", pe, again, err)
		}
		if msg := pe.Error(); !utf8.ValidString(msg) {
			t.Errorf("message %q is not UTF-8", msg)
		}
	})
}

// TestPartialSuccess: the fields of a partial success, and an answer
// without one.
func TestPartialSuccess(t *testing.T) {
	pe, err := partialSuccess(partial(3, "spans too old"))
	if err != nil || pe == nil || pe.Rejected != 3 || pe.Message != "spans too old" {
		t.Errorf("partialSuccess = %+v, %v", pe, err)
	}
	for _, b := range [][]byte{nil, partial(0, "")} {
		if pe, err := partialSuccess(b); pe != nil || err != nil {
			t.Errorf("partialSuccess(%x) = %+v, %v; want nothing", b, pe, err)
		}
	}
	if _, err := partialSuccess([]byte{0x0a, 0x80}); err == nil {
		t.Error("a truncated answer read without error")
	}
	if got := statusMessage(status("unknown field")); got != "unknown field" {
		t.Errorf("statusMessage = %q", got)
	}
}
