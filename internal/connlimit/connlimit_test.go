package connlimit_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/connlimit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs an http.Server answering "ok" on a capped loopback listener.
func serve(t *testing.T, max int, shed *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := connlimit.New(ln, max, func() { shed.Add(1) })
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		ConnState: cl.ConnState,
	}
	done := make(chan struct{})
	go func() { srv.Serve(cl); close(done) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		<-done
	})
	return ln.Addr().String()
}

// get sends one keep-alive GET on c and reads the answer within d.
func get(c net.Conn, br *bufio.Reader, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// TestIdleClosedFirst: at the cap, each new connection makes the server
// close the connection idle the longest, in order, and is served at once.
func TestIdleClosedFirst(t *testing.T) {
	var shed atomic.Int32
	addr := serve(t, 3, &shed)
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	var cs []client
	for i := range 6 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cl := client{c, bufio.NewReader(c)}
		if err := get(cl.c, cl.br, 2*time.Second); err != nil {
			t.Fatalf("connection %d (cap 3): %v", i, err)
		}
		cs = append(cs, cl)
	}
	if n := shed.Load(); n != 3 {
		t.Errorf("%d idle connections closed to make room for 3 beyond the cap, want 3", n)
	}
	// Which ones were closed depends on when the server marked each idle
	// (after its answer, which the client may read first); the newest,
	// idle the shortest, stays.
	closed := 0
	for i, cl := range cs {
		if err := get(cl.c, cl.br, 2*time.Second); err != nil {
			closed++
			if i == len(cs)-1 {
				t.Errorf("the newest connection was closed: %v", err)
			}
		}
	}
	if closed != 3 {
		t.Errorf("%d connections closed, want 3", closed)
	}
}

// TestCloseWhileWaiting: an Accept waiting for room returns once the
// listener is closed (goleak checks that nothing is left behind).
func TestCloseWhileWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := connlimit.New(ln, 1, nil)
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	held, err := cl.Accept() // takes the only slot and is never idle
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := cl.Accept()
		if c != nil {
			c.Close()
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("Accept returned %v beyond the cap while the only connection is busy", err)
	case <-time.After(100 * time.Millisecond):
	}
	cl.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits after Close")
	}
}
