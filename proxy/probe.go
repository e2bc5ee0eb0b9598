package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"time"
)

// Why probe: in TLS 1.3 the client completes its handshake before the
// server has judged the client certificate, so a refusal arrives as an
// alert on the connection's first read. Over HTTP/1.1 that alert becomes the
// request's error and is classified directly. Over HTTP/2 the connection's
// reader receives it and the request only learns that the connection "could
// not be established", or a write fails with a broken pipe; the cause is
// lost. For such unexplained failures the proxy asks the server directly,
// once per generation and at most every probeTTL: a fresh HTTP/1.1
// connection with the same certificate and one HEAD request. The answer is
// either an HTTP response (the certificate is accepted) or the alert.

// probeTTL bounds how long a probe's verdict is reused.
const probeTTL = 10 * time.Second

type verdict struct {
	refusal error // the server's certificate alert, or nil
	at      time.Time
}

// refusal returns the server's certificate alert when the server refuses
// this generation's certificate, or nil when it accepts it or the probe
// itself fails for another reason.
func (u *Upstream) refusal(ctx context.Context, g *generation) error {
	if v := g.verdict.Load(); v != nil && time.Since(v.at) < probeTTL {
		return v.refusal
	}
	g.probeMu.Lock()
	defer g.probeMu.Unlock()
	if v := g.verdict.Load(); v != nil && time.Since(v.at) < probeTTL {
		return v.refusal
	}
	err := u.probe(context.WithoutCancel(ctx), g)
	v := &verdict{at: time.Now()}
	if code, _, ok := serverAlert(err); ok && certificateAlerts[code] {
		v.refusal = err
	}
	g.verdict.Store(v)
	return v.refusal
}

// probe opens one HTTP/1.1 connection with g's certificate and sends
// "HEAD /". It returns nil when an HTTP response comes back.
func (u *Upstream) probe(ctx context.Context, g *generation) error {
	ctx, cancel := context.WithTimeout(ctx, u.timeouts.Dial+u.timeouts.TLSHandshake)
	defer cancel()
	conn, err := u.dialTLS(ctx, g.probeTLS)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "HEAD / HTTP/1.1\r\nHost: %s\r\nUser-Agent: payrails-mtls-proxy (certificate probe)\r\nConnection: close\r\n\r\n", u.authority); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodHead})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
