package main

import (
	"testing"
)

// msg appends field num (length-delimited) holding v to b.
func msg(b []byte, num uint64, v []byte) []byte {
	b = appendUvarint(b, num<<3|2)
	b = appendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func TestCountSpans(t *testing.T) {
	span := msg(nil, 5, []byte("server"))             // a span's name
	span = append(span, 0x39, 1, 2, 3, 4, 5, 6, 7, 8) // start_time_unix_nano, fixed64 (7)
	scope := msg(nil, 1, []byte("scope"))
	scope = msg(scope, 2, span)
	scope = msg(scope, 2, span)
	rs := msg(nil, 1, []byte("resource"))
	rs = msg(rs, 2, scope)
	rs = msg(rs, 2, scope)
	req := msg(nil, 1, rs)
	req = msg(req, 1, rs)
	n, err := countSpans(req)
	if err != nil || n != 8 {
		t.Fatalf("countSpans = %d, %v; want 8", n, err)
	}
	if _, err := countSpans(req[:len(req)-3]); err == nil {
		t.Errorf("a truncated export was counted")
	}
}

func FuzzCountSpans(f *testing.F) {
	f.Add(msg(nil, 1, msg(nil, 2, msg(nil, 2, []byte("x")))))
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		countSpans(b) // never panics, whatever it is given
	})
}
