package connlimit_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
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

// TestReadRequestNeverShed: net/http tells an idle connection's next
// request (StateActive) only after it has read its first bytes. A
// connection whose bytes the server has read is carrying a request, and is
// never closed to make room in that gap: the request would be handled
// (sent to the API) while its client saw the connection drop, and a client
// that sends it again would have it handled twice. Here the server's read
// and the next Accept are made one after the other, by hand.
func TestReadRequestNeverShed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := connlimit.New(ln, 1, nil)
	defer cl.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	served, err := cl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	cl.ConnState(served, http.StateIdle) // a keep-alive connection between requests
	if _, err := io.WriteString(client, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	served.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := served.Read(buf); n == 0 {
		t.Fatalf("the server read nothing of the next request: %v", err)
	}
	// The server has the request; it has not said StateActive yet. A new
	// connection arrives at the cap.
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := cl.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	// The served connection must stay usable: its answer reaches the client.
	select {
	case c := <-accepted:
		if c != nil {
			c.Close()
		}
		t.Fatal("a connection was accepted at the cap while the only one carried a request it had read: it was closed to make room")
	case <-time.After(200 * time.Millisecond): // a bounded wait for something that must not happen
	}
	if _, err := io.WriteString(served, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
		t.Fatalf("answering the request it had read: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatalf("the client got no answer to the request the server read: %v", err)
	}
	resp.Body.Close()
	served.Close() // frees the slot: the waiting Accept takes it
	if c := <-accepted; c == nil {
		t.Fatal("the waiting Accept failed once the slot was free")
	} else {
		c.Close()
	}
}

// TestPipelinedRequestNeverShed: a client that pipelines sends its next
// request before the answer to the last; net/http reads it into its
// buffer along with the first, says StateIdle once the first is answered,
// and then finds the next request in its buffer without reading the
// connection again. A connection in that gap holds a request: it is never
// closed to make room, or its client would see the connection drop with a
// request it had sent unanswered. Here a new client arrives at the cap in
// that gap, from the server's StateIdle hook.
func TestPipelinedRequestNeverShed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var shed atomic.Int32
	cl := connlimit.New(ln, 1, func() { shed.Add(1) })
	var once sync.Once
	newcomer := make(chan net.Conn, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }),
		ConnState: func(c net.Conn, st http.ConnState) {
			cl.ConnState(c, st)
			if st != http.StateIdle {
				return
			}
			once.Do(func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Errorf("dialling at the cap: %v", err)
					close(newcomer)
					return
				}
				newcomer <- c
				// A bounded wait for something that must not happen: the
				// connection with the next request in its buffer shed.
				deadline := time.Now().Add(300 * time.Millisecond)
				for shed.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			})
		},
	}
	done := make(chan struct{})
	go func() { srv.Serve(cl); close(done) }()
	defer func() {
		if c, ok := <-newcomer; ok {
			c.Close()
		}
		srv.Shutdown(context.Background())
		<-done
	}()

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(client, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(client)
	for _, want := range []string{"/first", "/second"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the answer to %s: %v (shed %d connections)", want, err, shed.Load())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Errorf("answer %q, want %q", body, want)
		}
	}
}
