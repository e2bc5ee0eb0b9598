package egress

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// scriptConn is a connection whose peer sends exactly in and swallows
// what is written; only Read and Write are used by connect.
type scriptConn struct {
	net.Conn
	in io.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }

// FuzzEgressAnswer: whatever the egress proxy answers to CONNECT, connect
// never panics; it opens a tunnel only on a 2xx head, and then every byte
// after the head comes out of the tunnel, in order, none lost or added; a
// refusal is an *Error with the answer's status code.
func FuzzEgressAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 Connection established\r\n\r\n",
		"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03\x00\x02hi",
		"HTTP/1.0 200 OK\r\nProxy-Agent: squid\r\n\r\nrest",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcdefgh",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
		"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200\n\nx",
		"SSH-2.0-OpenSSH_9.2\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		fail := &Error{proxy: "http://127.0.0.1:3128", target: egressTarget}
		tunnel, err := connect(&scriptConn{in: bytes.NewReader(answer)}, egressTarget, "", fail)
		if err != nil {
			var ee *Error
			if errors.As(err, &ee) && ee.step == stepRefused && (ee.code/100 == 2 || ee.code < 100 || ee.code > 999) {
				t.Fatalf("refused with status %d (%q)", ee.code, ee.status)
			}
			_ = fail.Error() + fail.Advice()
			return
		}
		rest, rerr := io.ReadAll(tunnel)
		if rerr != nil {
			t.Fatalf("reading the tunnel: %v", rerr)
		}
		if !bytes.HasSuffix(answer, rest) {
			t.Fatalf("tunnel gave %q, not the end of the answer %q", rest, answer)
		}
		head := answer[:len(answer)-len(rest)]
		if !bytes.HasSuffix(head, []byte("\n")) {
			t.Fatalf("tunnel opened after %q, which does not end a head", head)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode/100 != 2 || !strings.HasPrefix(string(head), "HTTP/") {
			t.Fatalf("tunnel opened after %q (re-read: %v, %v)", head, resp, err)
		}
	})
}
