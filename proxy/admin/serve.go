package admin

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/connlimit"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
	"go.uber.org/zap"
)

// The admin listener's default limits. The image binds it to 0.0.0.0,
// since the kubelet's probes and Prometheus come from outside the pod, so
// any client on the pod network can reach it: the limits keep what one
// client can hold small. A probe or a scrape is one small GET answered in
// well under a second.
const (
	// DefaultReadHeaderTimeout: a client has this long for its headers.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout: ... and for its whole request (admin requests
	// have no body).
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout: an answer is written within this long from the
	// end of its request headers; a client that stops reading is cut off.
	// With PAYRAILS_PROXY_DEBUG_PPROF=1 a CPU profile must be shorter
	// (/debug/pprof/profile?seconds=20).
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout: a keep-alive connection idle this long is closed
	// by the server (Prometheus reconnects at its next scrape).
	DefaultIdleTimeout = 30 * time.Second
	// DefaultMaxHeaderBytes: request headers beyond this get 431 (net/http
	// allows 4 KiB of slack on top). Probes and scrapes send a few hundred
	// bytes.
	DefaultMaxHeaderBytes = 8 << 10
	// DefaultMaxConns: at most this many connections are served at once,
	// idle keep-alive ones included. At the cap, the connection idle the
	// longest is closed to make room for a new one, so that a kubelet
	// probe is never queued behind idle clients (issue 22); when every
	// connection is busy, new ones wait, not accepted, in the listen
	// backlog until one is done.
	DefaultMaxConns = 32
	// DefaultShutdownTimeout: on shutdown, requests in progress get this
	// long to finish.
	DefaultShutdownTimeout = time.Second
)

// Limits bound what clients can hold on the admin listener. A zero field
// means its default (the Default* constants); tests shorten them.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	MaxConns          int
	ShutdownTimeout   time.Duration
}

// WithDefaults returns l with each zero field set to its default.
func (l Limits) WithDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	def(&l.ShutdownTimeout, DefaultShutdownTimeout)
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConns == 0 {
		l.MaxConns = DefaultMaxConns
	}
	return l
}

// Serve answers h's requests on ln with limits until ctx is done, then
// shuts down gracefully within limits.ShutdownTimeout. It is the one place
// the admin listener's server is built: cmd only passes the listener and
// the handler (New). It returns nil after a shutdown through ctx, or the
// error that stopped serving.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, limits Limits, log *zap.Logger) error {
	l := limits.WithDefaults()
	capped := connlimit.New(ln, l.MaxConns, nil)
	srv := &http.Server{
		ConnState:         capped.ConnState,
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
	return proxy.RunServer(ctx, srv, capped, l.ShutdownTimeout, log)
}
