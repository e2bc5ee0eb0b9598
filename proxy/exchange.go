package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/answer"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names of the canonical request log line. Headers are never logged
// (x-api-key, Authorization, Proxy-Authorization and cookies are secrets),
// nor bodies, nor query strings.
const (
	fieldID       = "id"
	fieldMethod   = "method"
	fieldMode     = "mode"
	fieldUpstream = "upstream"
	fieldHost     = "host"
	fieldPath     = "path"
	fieldStatus   = "status"
	fieldBytes    = "bytes"
	fieldDuration = "duration"
	fieldClient   = "client"
	fieldSerial   = "serial"
	fieldError    = "error"
	fieldCause    = "cause"
	fieldToken    = "token" // "injected" or "replayed", never the token itself
	fieldAttempts = "attempts"
	fieldAPICode  = "api_error_code"  // the code of Payrails' error answer
	fieldAPIID    = "api_error_id"    // its id, what Payrails support asks for
	fieldRetry    = "not_retried"     // why a failure was not sent again
	fieldConn     = "upstream_conn"   // "reused" or "new": did the send pay a TLS handshake
	fieldDropped  = "dropped_headers" // header fields dropped for an underscore in their name (their names are not logged)
)

// exchange is the state of one request, shared by ServeHTTP and the goproxy
// hooks through the request context. Only the request's own goroutine
// touches it.
type exchange struct {
	id             string
	start          time.Time
	mode           Mode
	up             *upstream.Client
	sent           upstream.Result                 // what the upstream client did with the request
	err            *failure.Error                  // a failure of the proxy's own making
	upstreamErr    error                           // the upstream body broke off mid-response
	bodyErr        atomic.Pointer[clientBodyError] // the client's request body failed (clientBody)
	apiError       *sniffer                        // the start of an error answer, for its code and id
	connReused     bool                            // the last send went out on a connection opened before it (no handshake paid)
	connKnown      bool                            // connReused is set
	droppedHeaders int                             // header fields dropped for an underscore in their name
}

// gotConn records whether the request's (last) send went out on a
// connection opened before (a warm one included) or a new one; both
// clients of the upstream report it through httptrace.
func (ex *exchange) gotConn(ci httptrace.GotConnInfo) {
	ex.connReused, ex.connKnown = ci.Reused, true
}

type exchangeKey struct{}

// exchangeFrom returns the exchange handle put in the request context.
func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// journal writes the one log line of each request and records its
// metrics, and names requests. Safe for concurrent use.
type journal struct {
	log *zap.Logger
	m   *Metrics
	ids *requestIDs
}

// start begins a request's exchange.
func (j journal) start() *exchange {
	return &exchange{id: j.ids.next(), start: time.Now()}
}

func (ex *exchange) fail(e *failure.Error) { ex.err = e }

// finish ends a request served by ServeHTTP. It runs deferred, so
// a response aborted by panic(http.ErrAbortHandler) is logged too (and the
// panic passed on to net/http).
func (j journal) finish(ex *exchange, rw *responseWriter, r *http.Request) {
	rec := recover()
	status := rw.status
	if rec != nil {
		status = 0 // the client got a broken response
	}
	if r.Method == http.MethodConnect && status == http.StatusSwitchingProtocols {
		status = http.StatusOK // the tunnel was opened
	}
	j.write(ex, r, status, rw.bytes, rec != nil)
	if rec != nil {
		panic(rec)
	}
}

// write writes the one log line of a request and records its metrics.
// broken means the client got a response cut short.
func (j journal) write(ex *exchange, r *http.Request, status int, bytes int64, broken bool) {
	elapsed := time.Since(ex.start)
	j.m.observe(ex, r.Method, status, elapsed)
	lvl := zapcore.InfoLevel
	switch {
	case broken || ex.upstreamErr != nil:
		lvl = zapcore.ErrorLevel
	case ex.err != nil && ex.err.Kind.Status() >= 500:
		lvl = zapcore.ErrorLevel
	case ex.err != nil:
		lvl = zapcore.WarnLevel
	}
	if ce := j.log.Check(lvl, "request"); ce != nil {
		fp := fieldPool.Get().(*[]zap.Field)
		fields := ex.logFields((*fp)[:0], r, status, bytes, elapsed)
		ce.Write(fields...)
		clear(fields)
		*fp = fields[:0]
		fieldPool.Put(fp)
	}
}

// logFields appends the fields of the request's log line to fields.
func (ex *exchange) logFields(fields []zap.Field, r *http.Request, status int, bytes int64, elapsed time.Duration) []zap.Field {
	host := r.Host
	fields = append(fields, zap.String(fieldID, ex.id), zap.String(fieldMethod, r.Method), zap.String(fieldMode, string(ex.mode)))
	if ex.up != nil {
		fields = append(fields, zap.String(fieldUpstream, ex.up.Name()))
		host = ex.up.Host()
	} else if r.URL.IsAbs() {
		host = r.URL.Host
	}
	fields = append(fields, zap.String(fieldHost, host), zap.String(fieldPath, r.URL.Path), zap.Int(fieldStatus, status),
		zap.Int64(fieldBytes, bytes), zap.Duration(fieldDuration, elapsed), zap.String(fieldClient, r.RemoteAddr))
	if ex.sent.Serial != "" {
		fields = append(fields, zap.String(fieldSerial, ex.sent.Serial))
	}
	if ex.sent.Token != "" {
		fields = append(fields, zap.String(fieldToken, ex.sent.Token))
	}
	if ex.sent.Attempts > 1 {
		fields = append(fields, zap.Int(fieldAttempts, ex.sent.Attempts))
	}
	if ex.connKnown {
		conn := "new"
		if ex.connReused {
			conn = "reused"
		}
		fields = append(fields, zap.String(fieldConn, conn))
	}
	if ex.apiError != nil {
		if pe, ok := answer.ParsePayrailsError(ex.apiError.bytes()); ok {
			fields = append(fields, zap.String(fieldAPICode, pe.Code), zap.String(fieldAPIID, pe.ID))
		}
	}
	if ex.sent.NotRetried != "" {
		fields = append(fields, zap.String(fieldRetry, ex.sent.NotRetried))
	}
	if ex.droppedHeaders > 0 {
		fields = append(fields, zap.Int(fieldDropped, ex.droppedHeaders))
	}
	switch {
	case ex.err != nil:
		fields = append(fields, zap.String(fieldError, string(ex.err.Kind)), zap.String(fieldCause, ex.err.Error()))
	case ex.upstreamErr != nil:
		fields = append(fields, zap.String(fieldError, "upstream_body"), zap.String(fieldCause, ex.upstreamErr.Error()))
	}
	return fields
}

// fieldPool recycles the log line's field slice: one fewer allocation of
// about a kilobyte per request.
var fieldPool = sync.Pool{New: func() any { s := make([]zap.Field, 0, 20); return &s }}

// sniffer keeps the first answer.SniffSize bytes of an error answer as they
// stream to the client, so that the log line can name Payrails' error code
// and id without buffering the body.
type sniffer struct {
	buf [answer.SniffSize]byte
	n   int
}

func (s *sniffer) Write(p []byte) (int, error) {
	s.n += copy(s.buf[s.n:], p)
	return len(p), nil
}

func (s *sniffer) bytes() []byte { return s.buf[:s.n] }

// requestIDs makes short unique request IDs: a random per-process prefix and
// a counter. They appear in error bodies and log lines to tie them together.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &requestIDs{prefix: hex.EncodeToString(b) + "-"}
}

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 10)
}
