package admin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/admin"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serveAdmin runs admin.Serve on a loopback port with limits and h (nil:
// a handler answering "ok") until the test ends.
func serveAdmin(t *testing.T, limits admin.Limits, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.Serve(ctx, ln, h, limits, zap.NewNop()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// conn is one raw client connection to the admin listener.
type conn struct {
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{Conn: c, br: bufio.NewReader(c)}
}

// get sends one keep-alive GET with extra header bytes and reads the
// answer within timeout.
func (c *conn) get(timeout time.Duration, filler int) (*http.Response, error) {
	_ = c.SetDeadline(time.Now().Add(timeout))
	req := "GET /healthz HTTP/1.1\r\nHost: admin\r\n"
	if filler > 0 {
		req += "X-Filler: " + strings.Repeat("a", filler) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body) // a refusal may close (reset) before its body ends
	resp.Body.Close()
	return resp, nil
}

// closedWithin reads until the server closes the connection and returns
// how long that took, or fails after max.
func (c *conn) closedWithin(t *testing.T, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(max))
	_, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", max)
	}
	return time.Since(start)
}

// TestServeClosesIdleConnections: keep-alive connections that go idle are
// closed by the server after IdleTimeout, however many there are.
func TestServeClosesIdleConnections(t *testing.T) {
	const idle = 400 * time.Millisecond
	addr := serveAdmin(t, admin.Limits{IdleTimeout: idle}, nil)
	const n = 20
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = dial(t, addr)
		if resp, err := conns[i].get(5*time.Second, 0); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %v %v", i, resp, err)
		}
	}
	answered := time.Now()
	for _, c := range conns {
		c.closedWithin(t, idle+5*time.Second)
	}
	took := time.Since(answered)
	t.Logf("%d idle keep-alive connections all closed by the server %s after their last answer (IdleTimeout %s)", n, took.Round(time.Millisecond), idle)
	if took < idle/2 {
		t.Errorf("closed after %s, well before IdleTimeout %s", took, idle)
	}
}

// TestServeCapsConnectionsIdleFirst (issue 22, item 3): with the cap
// reached by idle keep-alive connections (each sent one GET /healthz and
// stays open, as a scraper's pool does), a new connection (a kubelet
// probe) is answered at once: the connection idle the longest is closed to
// make room, the others stay.
func TestServeCapsConnectionsIdleFirst(t *testing.T) {
	const max = admin.DefaultMaxConns
	addr := serveAdmin(t, admin.Limits{}, nil)
	idle := make([]*conn, max)
	for i := range idle {
		idle[i] = dial(t, addr)
		if resp, err := idle[i].get(5*time.Second, 0); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("idle connection %d: %v %v", i, resp, err)
		}
	}
	// The server notes a connection idle on its own goroutine, which may
	// run after the client has read the answer and sent the next
	// connection's request: a second request on every connection but the
	// first makes the first the one idle the longest by 31 round trips,
	// not by one.
	for i := 1; i < max; i++ {
		if resp, err := idle[i].get(5*time.Second, 0); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("idle connection %d, second request: %v %v", i, resp, err)
		}
	}
	probe := dial(t, addr)
	start := time.Now()
	resp, err := probe.get(2*time.Second, 0)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("with %d idle connections open (the cap), a probe got %v %v within 2 s; want 200 at once", max, resp, err)
	}
	t.Logf("a probe at the cap of %d idle connections was answered in %s", max, time.Since(start).Round(time.Microsecond))
	idle[0].closedWithin(t, 2*time.Second)
	if resp, err := idle[max-1].get(2*time.Second, 0); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the connection idle the shortest was closed too: %v %v", resp, err)
	}
}

// TestServeCapsBusyConnections: connections beyond MaxConns while every
// served one is busy are not served: they wait (not accepted, in the
// listen backlog) and are served once one is done.
func TestServeCapsBusyConnections(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	addr := serveAdmin(t, admin.Limits{MaxConns: 2}, h)
	busy := []*conn{dial(t, addr), dial(t, addr)}
	for _, c := range busy {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	third := dial(t, addr) // the kernel completes the handshake; the server does not accept it
	if resp, err := third.get(300*time.Millisecond, 0); err == nil {
		t.Fatalf("a third connection was answered %d while two were busy (cap 2)", resp.StatusCode)
	}
	once.Do(func() { close(release) })
	start := time.Now()
	_ = third.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(third.br, nil) // its request was sent above
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the busy connections finished, the waiting one got %v %v", resp, err)
	}
	resp.Body.Close()
	t.Logf("the connection beyond the cap waited, and was answered %s after the busy ones finished", time.Since(start).Round(time.Millisecond))
}

// TestServeHeaderLimits: headers beyond MaxHeaderBytes get 431, and a
// client that does not finish its headers within ReadHeaderTimeout is cut
// off.
func TestServeHeaderLimits(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	addr := serveAdmin(t, admin.Limits{ReadHeaderTimeout: headerTimeout}, nil)
	for _, tt := range []struct {
		filler int
		want   int
	}{{1 << 10, http.StatusOK}, {admin.DefaultMaxHeaderBytes + 8<<10, http.StatusRequestHeaderFieldsTooLarge}} {
		resp, err := dial(t, addr).get(5*time.Second, tt.filler)
		if err != nil || resp.StatusCode != tt.want {
			t.Errorf("%d bytes of headers: %v %v, want status %d", tt.filler, resp, err, tt.want)
		}
	}
	slow := dial(t, addr)
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: admin\r\n"); err != nil {
		t.Fatal(err)
	}
	took := slow.closedWithin(t, headerTimeout+5*time.Second)
	t.Logf("a client that stopped in its headers was cut off after %s (ReadHeaderTimeout %s)", took.Round(time.Millisecond), headerTimeout)
	if took < headerTimeout/2 {
		t.Errorf("cut off after %s, before ReadHeaderTimeout %s", took, headerTimeout)
	}
}

// TestServeWriteTimeout: a client that stops reading an answer does not
// hold the handler past WriteTimeout: its writes fail.
func TestServeWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	var (
		mu      sync.Mutex
		failed  error
		elapsed time.Duration
		done    = make(chan struct{})
	)
	big := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		defer close(done)
		start := time.Now()
		chunk := make([]byte, 64<<10)
		for range 4096 { // 256 MiB at most: far beyond any socket buffer
			if _, err := w.Write(chunk); err != nil {
				mu.Lock()
				failed, elapsed = err, time.Since(start)
				mu.Unlock()
				return
			}
		}
	})
	addr := serveAdmin(t, admin.Limits{WriteTimeout: writeTimeout}, big)
	c := dial(t, addr)
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: admin\r\n\r\n") // and never read
	select {
	case <-done:
	case <-time.After(writeTimeout + 10*time.Second):
		t.Fatal("the handler still writes to a client that reads nothing")
	}
	mu.Lock()
	defer mu.Unlock()
	if failed == nil {
		t.Fatal("256 MiB were written to a client that reads nothing")
	}
	t.Logf("writes to a client that stopped reading failed after %s (WriteTimeout %s): %v", elapsed.Round(time.Millisecond), writeTimeout, failed)
}

// TestServeDefaults: the documented defaults, which the zero Limits means.
func TestServeDefaults(t *testing.T) {
	d := admin.Limits{}.WithDefaults()
	if d.IdleTimeout > 30*time.Second || d.ReadHeaderTimeout == 0 || d.WriteTimeout == 0 || d.MaxConns == 0 ||
		d.MaxHeaderBytes != admin.DefaultMaxHeaderBytes {
		t.Errorf("defaults %+v: want every limit set, idle at most 30 s", d)
	}
}
