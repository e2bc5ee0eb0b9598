package proxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestBodyCopier: every body reaches the client byte for byte, whatever
// its size (around the buffer's and the coalescing threshold), whether it
// is coalesced, and however the upstream's reads split it; a coalesced
// body is written in full buffers but the last.
func TestBodyCopier(t *testing.T) {
	const record = 16 << 10 // a TLS record, what one read of the upstream yields at most
	sizes := []int{0, 1, 200, record, record + 1, coalesceMinSize - 1, coalesceMinSize, coalesceMinSize + 1,
		3*copyBufSize + 17}
	for _, n := range sizes {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(rand.Uint32())
		}
		for _, coalesce := range []bool{false, true} {
			for _, split := range []struct {
				name string
				r    func(io.Reader) io.Reader
			}{
				{"whole", func(r io.Reader) io.Reader { return r }},
				{"byte at a time", iotest.OneByteReader},
				{"halves", iotest.HalfReader},
			} {
				if split.name == "byte at a time" && n > record+1 {
					continue // slow, and the coalescing case is covered by halves
				}
				var w writes
				got, err := bodyCopier{Reader: split.r(bytes.NewReader(body)), coalesce: coalesce}.WriteTo(&w)
				if err != nil || got != int64(n) || !bytes.Equal(w.Bytes(), body) {
					t.Errorf("size %d coalesce %v read %s: copied %d bytes (%v), the client got %d, equal %v; want %d, nil, equal",
						n, coalesce, split.name, got, err, w.Len(), bytes.Equal(w.Bytes(), body), n)
				}
				if coalesce && len(w.sizes) > 0 {
					for i, s := range w.sizes[:len(w.sizes)-1] {
						if s != copyBufSize {
							t.Errorf("size %d coalesced, read %s: write %d of %d was %d bytes, want full %d-byte writes but the last",
								n, split.name, i+1, len(w.sizes), s, copyBufSize)
							break
						}
					}
				}
			}
		}
	}
}

// writes is a client connection that keeps what it is written and the
// size of each write.
type writes struct {
	bytes.Buffer
	sizes []int
}

func (w *writes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.Buffer.Write(p)
}
