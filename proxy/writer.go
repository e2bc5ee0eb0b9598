package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
)

// responseWriter records the status and byte count for the log line. It
// passes Flush, Hijack and ReadFrom through, because goproxy type-asserts
// the first two and net/http's ReadFrom copies without a per-request buffer.
type responseWriter struct {
	http.ResponseWriter
	status   int
	bytes    int64
	onHijack func(net.Conn) net.Conn // wraps a hijacked connection; nil leaves it as is
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var (
		n   int64
		err error
	)
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.bytes += n
	return n, err
}

func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("%T cannot be hijacked", w.ResponseWriter)
	}
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	c, brw, err := h.Hijack()
	if err == nil && w.onHijack != nil {
		c = w.onHijack(c)
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
