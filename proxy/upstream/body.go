package upstream

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// keptBody is a request body read whole (up to retry.max_body) so that it
// can be sent again. Each attempt reads it through a reader of its own;
// the buffer goes back to the pool when the request has ended and every
// reader is closed (a transport may read after RoundTrip returned).
type keptBody struct {
	buf  *bytes.Buffer
	refs atomic.Int32
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// keepBody reads out's body (at most max bytes) into a kept body, and
// points out at it. It returns nil, leaving out streaming what was read and
// the rest, when the body is larger, of a kind that must stream (Expect:
// 100-continue: the client waits before sending it), or absent. A failure
// to read the client's body is returned as it is. It never sets GetBody:
// net/http's Transport would resend the request on its own
// (nonReplayable).
func keepBody(out *http.Request, max int64) (*keptBody, error) {
	if out.Body == nil || out.Body == http.NoBody || max <= 0 || out.ContentLength > max || out.Header["Expect"] != nil {
		return nil, nil
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(out.Body, max+1))
	if err != nil {
		bodyPool.Put(buf)
		return nil, err
	}
	if n > max {
		rest := out.Body
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(bytes.Clone(buf.Bytes())), rest), rest}
		bodyPool.Put(buf)
		return nil, nil
	}
	k := &keptBody{buf: buf}
	k.refs.Store(1) // the request's
	out.Body = k.reader()
	return k, nil
}

// reader returns a reader of the whole body for one attempt.
func (k *keptBody) reader() io.ReadCloser {
	k.refs.Add(1)
	return &keptReader{Reader: bytes.NewReader(k.buf.Bytes()), k: k}
}

// release drops one reference; the last returns the buffer to the pool.
func (k *keptBody) release() {
	if k.refs.Add(-1) == 0 {
		if k.buf.Cap() <= 4<<20 { // a rare big body is not worth keeping around
			bodyPool.Put(k.buf)
		}
	}
}

type keptReader struct {
	*bytes.Reader
	k    *keptBody
	once sync.Once
}

func (r *keptReader) Close() error {
	r.once.Do(r.k.release)
	return nil
}

// newIdempotencyKey is a fresh random key (128 bits, hex).
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
