package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Server limits on the client side of the proxy.
const (
	readHeaderTimeout = 10 * time.Second // a client that never finishes its headers
	clientIdleTimeout = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Listen opens the proxy's TCP listener on addr. Accepted connections get
// no TCP keep-alive probes: net.Listen's default turns them on with four
// setsockopt calls per connection, a tenth of the system calls a client
// that opens a connection per request costs (bench/compare's close
// scenario, strace -c). They would find nothing the server's own timeouts
// do not: an idle client connection is closed after clientIdleTimeout,
// a stalled request after readHeaderTimeout or the body idle timeout, and
// probes never fire on a connection with data in flight.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// Serve answers requests on ln until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets requests in flight finish for up to
// shutdownTimeout, closes what is left, and returns. It returns nil after a
// shutdown requested through ctx, or the error that stopped serving.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener, shutdownTimeout time.Duration) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       clientIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(p.log.Named("http")),
		ConnState:         func(c net.Conn, st http.ConnState) { p.m.connState(c, st) },
	}
	tctx, stopTokens := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, up := range p.upstreams {
		if up.manager != nil {
			wg.Go(func() { up.manager.Run(tctx) })
		}
	}
	err := RunServer(ctx, srv, ln, shutdownTimeout, p.log)
	p.drainTunnels(shutdownTimeout) // hijacked CONNECT tunnels are not the server's to wait for
	stopTokens()                    // after the last request in flight: it may still need a token
	wg.Wait()
	return err
}

// RunServer runs srv on ln until ctx is cancelled, then shuts it down
// gracefully within shutdownTimeout; the proxy and admin listeners share it.
func RunServer(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration, log *zap.Logger) error {
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
