package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
)

// responseWriter records the status and byte count for the log line, and
// ends the client's connection after the answer when the request's framing
// cannot be trusted for a next one. It passes Flush, Hijack and ReadFrom
// through, because goproxy type-asserts the first two and net/http's
// ReadFrom copies without a per-request buffer.
type responseWriter struct {
	http.ResponseWriter
	ex         *exchange
	closeAfter bool // close the connection after this answer whatever happens (framingEndsConnection)
	status     int
	bytes      int64
}

// WriteHeader adds Connection: close to the final answer when the
// connection must end with it: an HTTP/1.0 exchange, or a request refused
// or abandoned for its framing or body (RFC 9112 §9.3: no byte of a body
// the proxy did not read may be taken for the next request). It is set
// here because goproxy replaces the header map before writing it.
func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		if w.closeAfter || (w.ex.err != nil && w.ex.err.Kind.ClosesConnection()) {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
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
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
