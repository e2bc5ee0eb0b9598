//go:build unix

package proxy_test

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

// TestListenWithoutKeepAlive: connections accepted by proxy.Listen carry
// no TCP keep-alive (see Listen), while net.Listen's do, so the check
// below can tell them apart.
func TestListenWithoutKeepAlive(t *testing.T) {
	for _, tt := range []struct {
		name   string
		listen func() (net.Listener, error)
		want   int
	}{
		{"proxy.Listen", func() (net.Listener, error) { return proxy.Listen(context.Background(), "127.0.0.1:0") }, 0},
		{"net.Listen", func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := tt.listen()
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			raw, err := s.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var gerr error
			if err := raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || gerr != nil {
				t.Fatalf("reading SO_KEEPALIVE: %v %v", err, gerr)
			}
			if (got != 0) != (tt.want != 0) {
				t.Errorf("SO_KEEPALIVE = %d, want %d", got, tt.want)
			}
		})
	}
}
