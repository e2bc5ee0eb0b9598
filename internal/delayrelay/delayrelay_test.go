package delayrelay

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
)

// startEcho runs a TCP server that echoes each connection until EOF, then
// closes it. It stops when the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(c net.Conn) { _, _ = io.Copy(c, c) })
	return ln.Addr().String()
}

// TestRelayDelaysAndKeepsOrder sends data through the relay and back: it
// must arrive intact, in order, after the simulated handshake and two
// one-way delays at least (only lower bounds: the machine may be slow).
func TestRelayDelaysAndKeepsOrder(t *testing.T) {
	tests := []struct {
		name   string
		oneWay time.Duration
		size   int
	}{
		{"no delay", 0, 1 << 20},
		{"10ms each way", 10 * time.Millisecond, 256 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Start(startEcho(t), tt.oneWay)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			want := make([]byte, tt.size)
			_, _ = rand.Read(want)
			start := time.Now()
			c, err := net.Dial("tcp", r.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			go func() {
				_, _ = c.Write(want)
				_ = c.(*net.TCPConn).CloseWrite() // the echo server then closes, through the relay
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading the echo: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(want))
			}
			if least := 4 * tt.oneWay; time.Since(start) < least {
				t.Errorf("round trip took %v, want at least %v (handshake plus there and back)", time.Since(start), least)
			}
		})
	}
}

// TestRelayCloseEndsConnections: Close cuts relayed connections and returns.
func TestRelayCloseEndsConnections(t *testing.T) {
	r, err := Start(startEcho(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo through the relay: %v", err)
	}
	r.Close()
	if n, err := c.Read(buf); err == nil {
		t.Errorf("read %d bytes after Close, want EOF or an error", n)
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Error("the relay still accepts after Close")
	}
}

// TestRelayDelaysTheEnd: a server's close reaches the client oneWay after
// the server made it, not at once, or the keep-alive race the relay is for
// would never happen across it.
func TestRelayDelaysTheEnd(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loopback.Serve(t, ln, func(net.Conn) {}) // closes each connection as soon as it comes
	r, err := Start(ln.Addr().String(), oneWay)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d bytes, %v; want EOF", n, err)
	}
	if least := 3 * oneWay; time.Since(start) < least {
		t.Errorf("the server's close arrived after %v, want at least %v (handshake, then the FIN's one way)", time.Since(start), least)
	}
}
