// Package standin is a local stand-in for the Payrails API: an HTTPS server
// that requires a client certificate signed by a given CA, issues access
// tokens at /auth/token/{client id}, and echoes what it received. The demo
// serves it, and the project's tests use it as the upstream.
//
// Endpoints (every one requires the client certificate):
//
//	POST /auth/token/{id}  x-api-key must match; answers Payrails' token JSON
//	GET  /bytes/{n}        n bytes of a fixed pattern (?chunked=1: no Content-Length)
//	GET  /cut/{n}          a response that breaks off after n bytes (chunked, or ?length=L declared)
//	GET  /delay/{d}        answers after d (a Go duration), or when the client leaves
//	GET  /gzip             a gzip-encoded JSON body with Content-Encoding: gzip
//	GET  /status/{code}    answers with that status
//	*    anything else     JSON echo: method, path, headers, body digest, client certificate, TLS
//	                       (?delay=DURATION answers after that long)
package standin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a stand-in server. Certificate and ClientCAs are required.
type Options struct {
	Addr         string          // listen address; "" means 127.0.0.1:0
	Certificate  tls.Certificate // the server's certificate
	ClientCAs    *x509.CertPool  // CAs whose client certificates are accepted
	ClientID     string          // for /auth/token/{id}; "" accepts any id
	ClientSecret string          // expected x-api-key; "" refuses every token request
	TokenTTL     time.Duration   // expires_in of issued tokens; 0 means one hour
	DisableHTTP2 bool            // offer only HTTP/1.1 in ALPN
	MaxVersion   uint16          // cap the TLS version (tls.VersionTLS12); 0 means the default
	Keys         *KeyCounter     // counts X-Idempotency-Key arrivals; may be shared across restarts
	RequireToken bool            // every endpoint but /auth/token wants a valid issued Bearer token
	Secret       func() string   // the expected x-api-key, read at each token request; overrides ClientSecret
	IdleTimeout  time.Duration   // close keep-alive connections idle this long; 0 means never
	// RefusalPage lets a client without a certificate finish the handshake
	// (one that sends a certificate must still present a valid one) and
	// answers its requests 400 with nginx's refusal page, as an edge that
	// checks the certificate at HTTP level does (ssl_verify_client
	// optional). For people trying the demo: a TLS 1.3 alert after the
	// handshake shows in Debian 12's curl as "(55) getpeername() failed",
	// this page as what it is. false: the handshake requires a certificate.
	RefusalPage bool
	// Refuse, if not nil, is asked at each handshake about the client's
	// certificate; true refuses it with a TLS alert, as a server refuses a
	// revoked certificate.
	Refuse func(leaf *x509.Certificate) bool
}

// KeyCounter counts how often each X-Idempotency-Key reached the echo
// endpoint, so a test can prove no request was sent twice. Safe for
// concurrent use; the zero value is ready.
type KeyCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (k *KeyCounter) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n == nil {
		k.n = map[string]int{}
	}
	k.n[key]++
}

// Count returns how often key arrived.
func (k *KeyCounter) Count(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n[key]
}

// Snapshot returns a copy of all counts.
func (k *KeyCounter) Snapshot() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.n))
	for key, v := range k.n {
		out[key] = v
	}
	return out
}

// Server is a running stand-in. Its counters are safe for concurrent use.
type Server struct {
	URL  string // https://ADDR
	Addr string // the listen address, HOST:PORT

	opts        Options
	srv         *http.Server
	ln          net.Listener
	done        chan struct{}
	conns       atomic.Int64   // connections accepted
	open        atomic.Int64   // connections open now
	live        sync.WaitGroup // connection goroutines: Close waits for them
	requests    atomic.Int64
	tokenIssued atomic.Int64
	tok         tokens
}

// Start listens and serves in the background until Close.
func Start(o Options) (*Server, error) {
	if o.ClientCAs == nil {
		return nil, errors.New("standin: ClientCAs is required: the stand-in always requires a client certificate")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	cfg := tlsConfig(o)
	raw, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("standin: listening on %s: %w", o.Addr, err)
	}
	s := &Server{opts: o, ln: raw, Addr: raw.Addr().String(), done: make(chan struct{})}
	s.URL = "https://" + s.Addr
	s.srv = &http.Server{
		Handler:           s.routes(),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       o.IdleTimeout,
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew: // in Serve's accept loop, so before Serve returns
				s.conns.Add(1)
				s.open.Add(1)
				s.live.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.open.Add(-1)
				s.live.Done()
			}
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c.RemoteAddr().String())
		},
		ErrorLog: quietLog(),
	}
	if o.DisableHTTP2 {
		s.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	go func() {
		defer close(s.done)
		_ = s.srv.ServeTLS(raw, "", "")
	}()
	return s, nil
}

// tlsConfig is the stand-in's TLS: it requires a client certificate of
// o.ClientCAs (unless o.RefusalPage answers its absence with a page),
// refuses what o.Refuse says, offers HTTP/2 unless o.DisableHTTP2.
func tlsConfig(o Options) *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if o.DisableHTTP2 {
		protos = []string{"http/1.1"}
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{o.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    o.ClientCAs,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   o.MaxVersion,
		NextProtos:   protos,
	}
	if o.RefusalPage {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if o.Refuse != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && o.Refuse(cs.PeerCertificates[0]) {
				return errors.New("standin: the client certificate is refused")
			}
			return nil
		}
	}
	return cfg
}

// Handler returns the stand-in's endpoints without a listener, for serving
// behind another TLS terminator (the interop tests put nginx in front). The
// echo then reports no client certificate of its own; the terminator can
// pass its verdict in headers, which the echo shows.
func Handler(o Options) http.Handler {
	if o.TokenTTL == 0 {
		o.TokenTTL = time.Hour
	}
	s := &Server{opts: o}
	return s.routes()
}

// Close stops the server, closes every connection and waits until their
// goroutines have ended: after answering a request whose body it did not
// read, net/http lingers up to half a second before it lets a connection go
// (Server.closeWriteAndWait), and tests that check for leaked goroutines
// must not see that as a leak.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	s.live.Wait()
	return err
}

// Connections is the number of TCP connections accepted so far.
func (s *Server) Connections() int64 { return s.conns.Load() }

// OpenConnections is the number of TCP connections open now.
func (s *Server) OpenConnections() int64 { return s.open.Load() }

// Requests is the number of requests handled so far.
func (s *Server) Requests() int64 { return s.requests.Load() }

// TokensIssued is the number of successful token requests.
func (s *Server) TokensIssued() int64 { return s.tokenIssued.Load() }

type connKey struct{}
