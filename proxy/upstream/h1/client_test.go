package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const host = "api.test"

// newClient is a fast path to the scripted upstream s, with a pool of
// up to 16 idle connections; done counts finished responses.
func newClient(t *testing.T, p *tlsscript.PKI, s *tlsscript.Server, headerTimeout time.Duration, done *atomic.Int32) *Client {
	t.Helper()
	c := &Client{Pool: NewPool(time.Hour, 16), HeaderTimeout: headerTimeout, Done: func() {
		if done != nil {
			done.Add(1)
		}
	}}
	cfg := p.ClientConfig(host, "http/1.1")
	c.Dial = func(ctx context.Context) (*Conn, error) {
		d := tls.Dialer{Config: cfg}
		nc, err := d.DialContext(ctx, "tcp", s.Addr)
		if err != nil {
			return nil, err
		}
		return NewConn(nc.(*tls.Conn), &c.Open), nil
	}
	t.Cleanup(func() { c.Pool.CloseIdle(true) })
	return c
}

func newReq(t *testing.T, method, body string, mod func(*http.Request)) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+host+"/v1/x", r)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(req)
	}
	return req
}

// TestTakes: which requests the fast path takes.
func TestTakes(t *testing.T) {
	unknownLength := func(r *http.Request) { r.ContentLength = -1 }
	expect := func(r *http.Request) { r.Header.Set("Expect", "100-continue") }
	tests := []struct {
		name string
		req  *http.Request
		want bool
	}{
		{"GET", newReq(t, "GET", "", nil), true},
		{"HEAD", newReq(t, "HEAD", "", nil), true},
		{"POST without a body", newReq(t, "POST", "", nil), true},
		{"small POST", newReq(t, "POST", `{"amount":1}`, nil), true},
		{"64 KiB body", newReq(t, "POST", strings.Repeat("a", MaxBody), nil), true},
		{"64 KiB + 1 body", newReq(t, "POST", strings.Repeat("a", MaxBody+1), nil), false},
		{"unknown length", newReq(t, "POST", "abc", unknownLength), false},
		{"Expect: 100-continue", newReq(t, "POST", "abc", expect), false},
		{"Expect: 100-continue without a body", newReq(t, "POST", "", expect), true},
		{"request trailers", newReq(t, "POST", "abc", func(r *http.Request) { r.Trailer = http.Header{"X-Sum": nil} }), false},
		{"upgrade", newReq(t, "GET", "", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }), false},
	}
	for _, tt := range tests {
		if got := Takes(tt.req); got != tt.want {
			t.Errorf("%s: Takes = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestTrace: the fast path reports, through the request's
// httptrace.ClientTrace, each connection it takes (new, then reused) and
// the first byte of the answer, as net/http's Transport does.
func TestTrace(t *testing.T) {
	p := tlsscript.NewPKI(t, host)
	s := tlsscript.Start(t, p, tlsscript.AnswerOK)
	var done atomic.Int32
	c := newClient(t, p, s, 5*time.Second, &done)
	var reused []bool
	var firstBytes int
	trace := &httptrace.ClientTrace{
		GotConn:              func(ci httptrace.GotConnInfo) { reused = append(reused, ci.Reused) },
		GotFirstResponseByte: func() { firstBytes++ },
	}
	for range 2 {
		req := newReq(t, "GET", "", nil)
		resp, err := c.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if len(reused) != 2 || reused[0] || !reused[1] || firstBytes != 2 || done.Load() != 2 {
		t.Errorf("GotConn reused %v, GotFirstResponseByte %d times, Done %d times; want [false true], 2, 2",
			reused, firstBytes, done.Load())
	}
}

// dialConns opens n connections of c.
func dialConns(t *testing.T, c *Client, n int) []*Conn {
	t.Helper()
	var out []*Conn
	for range n {
		conn, err := c.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, conn)
	}
	return out
}

// TestPoolOrderAndSweep: the pool hands out its most recently used
// connection first, closes those idle past the idle timeout, closes what
// comes back when full or retired.
func TestPoolOrderAndSweep(t *testing.T) {
	p := tlsscript.NewPKI(t, host)
	s := tlsscript.Start(t, p, tlsscript.Discard)
	c := newClient(t, p, s, time.Second, nil)
	cs := dialConns(t, c, 3)
	pool := NewPool(time.Hour, 2)
	pool.Put(cs[0])
	pool.Put(cs[1])
	pool.Put(cs[2]) // full: closed
	if got := pool.Get(); got != cs[1] {
		t.Errorf("Get returned the older connection, want the most recently used")
	}
	if got := pool.Get(); got != cs[0] {
		t.Errorf("second Get did not return the remaining connection")
	}
	if pool.Get() != nil {
		t.Error("empty pool returned a connection")
	}
	if _, err := cs[2].conn.Write([]byte("x")); err == nil {
		t.Error("the connection put into a full pool was not closed")
	}
	cs[0].Close()
	cs[1].Close()

	sweeping := NewPool(50*time.Millisecond, 4)
	fresh := dialConns(t, c, 1)[0]
	sweeping.Put(fresh)
	poll.Until(t, "the sweep to close a connection idle past the idle timeout", 5*time.Second, func() bool {
		return sweeping.Len() == 0
	})
	if _, err := fresh.conn.Write([]byte("x")); err == nil {
		t.Error("the swept connection is still open")
	}

	retired := NewPool(time.Hour, 4)
	retired.CloseIdle(true)
	late := dialConns(t, c, 1)[0]
	retired.Put(late)
	if _, err := late.conn.Write([]byte("x")); err == nil {
		t.Error("a connection coming back to a retired pool was not closed")
	}
}

// TestDeadConnections: a pooled connection the server closed, or on which
// it sent bytes unasked (in the socket or already decrypted by crypto/tls),
// is never handed out.
func TestDeadConnections(t *testing.T) {
	p := tlsscript.NewPKI(t, host)
	script := make(chan string, 3)
	s := tlsscript.Start(t, p, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		switch <-script {
		case "close":
			c.Close()
		case "unsolicited":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			io.Copy(io.Discard, br)
		case "quiet":
			io.Copy(io.Discard, br)
		}
	})
	c := newClient(t, p, s, time.Second, nil)
	for _, tt := range []struct {
		script string
		alive  bool
	}{{"quiet", true}, {"close", false}, {"unsolicited", false}} {
		script <- tt.script
		conn := dialConns(t, c, 1)[0]
		if tt.alive {
			if !conn.Alive() {
				t.Errorf("%s: Alive = false, want true", tt.script)
			}
		} else { // dead once the bytes or the FIN have arrived
			poll.Until(t, tt.script+": Alive to report the connection dead", 5*time.Second, func() bool { return !conn.Alive() })
		}
		conn.Close()
	}

	// Decrypted but unread: what is left of a record once a response ended.
	s2 := tlsscript.Start(t, p, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"+strings.Repeat("a", 10000)+"EXTRA")
			io.Copy(io.Discard, br)
		}
	})
	c2 := newClient(t, p, s2, time.Second, nil)
	resp, err := c2.RoundTrip(newReq(t, "GET", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if conn := c2.Pool.Get(); conn != nil {
		t.Error("a connection with decrypted bytes left over was handed out")
	}
}

// TestResponseHeaderCap: the fast path stops reading response headers at
// MaxResponseHeaderBytes (the upstream client gives net/http's Transport
// the same cap).
func TestResponseHeaderCap(t *testing.T) {
	p := tlsscript.NewPKI(t, host)
	s := tlsscript.Start(t, p, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Filler: ")
			chunk := strings.Repeat("a", 64<<10)
			for range 40 {
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		}
	})
	_, err := newClient(t, p, s, 5*time.Second, nil).RoundTrip(newReq(t, "GET", "", nil))
	if !errors.Is(err, errResponseHeaderTooLarge) {
		t.Errorf("error %v, want %v", err, errResponseHeaderTooLarge)
	}
}

// TestEarlyAnswer: a server that answers and closes before reading the
// body has its answer returned, and the connection is not pooled.
func TestEarlyAnswer(t *testing.T) {
	p := tlsscript.NewPKI(t, host)
	s := tlsscript.Start(t, p, func(_ int32, c *tls.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		}
	})
	c := newClient(t, p, s, 5*time.Second, nil)
	resp, err := c.RoundTrip(newReq(t, "POST", strings.Repeat("a", 60<<10), nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want the server's 413", resp.StatusCode)
	}
	if conn := c.Pool.Get(); conn != nil {
		t.Error("the connection that carried the early answer was pooled")
	}
}

// TestCancellation: the request context ending breaks a waiting exchange
// off at once, and its connection is closed, not reused. The cancel comes
// once the server has read the request, so that there is a connection to
// leave out of the pool.
func TestCancellation(t *testing.T) {
	read := make(chan struct{})  // closed once the server has read the request
	ended := make(chan error, 1) // the server's read after the request: nil at EOF
	var once sync.Once
	p := tlsscript.NewPKI(t, host)
	s := tlsscript.Start(t, p, func(_ int32, c *tls.Conn, br *bufio.Reader) { // never answers
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		once.Do(func() {
			close(read)
			_, err := io.Copy(io.Discard, br)
			ended <- err
		})
	})
	c := newClient(t, p, s, time.Minute, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newReq(t, "GET", "", nil).WithContext(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.RoundTrip(req)
		done <- err
	}()
	select {
	case <-read:
	case err := <-done:
		t.Fatalf("the exchange ended before the server read the request: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not get the request")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the exchange did not stop when its context was cancelled")
	}
	// Counted, not got: Get would drop (and close) a connection left with
	// the cancel's past deadline, which then reads as dead.
	if n := c.Pool.Len(); n != 0 {
		t.Errorf("%d connections pooled after the cancelled exchange, want 0", n)
	}
	// The server seeing the connection end shows the exchange closed it.
	select {
	case err := <-ended:
		if err != nil && !errors.Is(err, io.EOF) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("the server's connection ended with %v, want EOF: the cancelled exchange did not close it", err)
			}
		}
	case <-time.After(5 * time.Second):
		t.Error("the cancelled exchange's connection is still open")
	}
}
