package loopback

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestServeEndsBlockedHandlers: a handler blocked reading its connection
// is ended when the test does, and the cleanup waits for it.
func TestServeEndsBlockedHandlers(t *testing.T) {
	ended := make(chan struct{})
	var c net.Conn // the client stays open until after the cleanup
	t.Run("serve", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		Serve(t, ln, func(c net.Conn) {
			defer close(ended)
			c.Write([]byte("hello"))
			io.Copy(io.Discard, c) // until Serve's cleanup closes c
		})
		if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q, %v", buf, err)
		}
	})
	if c != nil {
		defer c.Close()
	}
	select {
	case <-ended:
	default:
		t.Fatal("the handler was still running after the test's cleanup")
	}
}
