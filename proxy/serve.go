package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/connlimit"
	"go.uber.org/zap"
)

// Timeouts is the configuration's timeouts block; the proxy uses its
// TLSHandshake for intercepted tunnels (zero: the default).
type Timeouts = config.Timeouts

// ClientLimits bound what a client may make the proxy hold: on the proxy
// port and, identically, inside an intercepted CONNECT tunnel. Zero fields
// take DefaultClientLimits' values (withClientDefaults, the one place).
type ClientLimits struct {
	HeaderTimeout  time.Duration // to read a request's line and headers
	IdleTimeout    time.Duration // a keep-alive connection may wait this long for its next request
	BodyIdle       time.Duration // a request body may pause this long before the request gets 408
	MaxHeaderBytes int           // request line and headers; beyond it 431
	// MaxConns caps the proxy port's connections, tunnels included
	// (access.max_connections): at the cap the connection idle the longest
	// is closed to make room; when all are busy new ones wait in the listen
	// backlog (internal/connlimit).
	MaxConns int
}

// DefaultClientLimits are the proxy port's limits. A service on the same
// host sends its headers in one write; 64 KiB is four times what Payrails'
// own edge accepts.
var DefaultClientLimits = ClientLimits{HeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
	BodyIdle: 30 * time.Second, MaxHeaderBytes: 64 << 10, MaxConns: config.DefaultMaxConnections}

func withClientDefaults(l ClientLimits) ClientLimits {
	d := DefaultClientLimits
	if l.HeaderTimeout > 0 {
		d.HeaderTimeout = l.HeaderTimeout
	}
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.BodyIdle > 0 {
		d.BodyIdle = l.BodyIdle
	}
	if l.MaxHeaderBytes > 0 {
		d.MaxHeaderBytes = l.MaxHeaderBytes
	}
	if l.MaxConns > 0 {
		d.MaxConns = l.MaxConns
	}
	return d
}

// Listen opens the proxy's TCP listener on addr. Accepted connections get
// no TCP keep-alive probes: net.Listen's default turns them on with four
// setsockopt calls per connection, a tenth of the system calls a client
// that opens a connection per request costs (bench/compare's close
// scenario, strace -c). They would find nothing the server's own timeouts
// do not: an idle client connection is closed after the idle timeout,
// a stalled request after the header or body idle timeout (ClientLimits), and
// probes never fire on a connection with data in flight.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// Serve answers requests on ln until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets requests in flight finish for up to
// shutdownTimeout, closes what is left, and returns. It returns nil after a
// shutdown requested through ctx, or the error that stopped serving. The
// upstream clients' Run must outlast it: requests in flight may still need
// a token or a failover.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener, shutdownTimeout time.Duration) error {
	capped := connlimit.New(sourceFilter{Listener: ln, a: p.adm}, p.limits.MaxConns, p.m.shed)
	srv := p.newServer(p, capped.ConnState)
	// Hijacked CONNECT tunnels are not srv's to wait for: they shut down
	// alongside it, within the same deadline.
	return RunServer(ctx, srv, capped, shutdownTimeout, p.log, p.tunnels.shutdown)
}

// newServer is the one place where a server for clients is made: the proxy
// port and every intercepted tunnel are served with the same limits.
// onState, if not nil, is called after the metrics on every state change.
func (p *Proxy) newServer(h http.Handler, onState func(net.Conn, http.ConnState)) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: p.limits.HeaderTimeout,
		IdleTimeout:       p.limits.IdleTimeout,
		MaxHeaderBytes:    p.limits.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(p.log.Named("http")),
		ConnState: func(c net.Conn, st http.ConnState) {
			p.m.connState(c, st)
			if onState != nil {
				onState(c, st)
			}
		},
	}
}

// RunServer runs srv on ln until ctx is cancelled, then shuts it down
// gracefully within shutdownTimeout; the proxy and admin listeners share it.
// Each of also runs alongside srv's shutdown, with the same deadline, and
// has returned when RunServer returns.
func RunServer(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration, log *zap.Logger,
	also ...func(context.Context)) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", zap.String("listener", ln.Addr().String()),
		zap.Duration("timeout", shutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range also {
		wg.Go(func() { f(sctx) })
	}
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timeout reached; closing the remaining connections",
			zap.String("listener", ln.Addr().String()))
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
