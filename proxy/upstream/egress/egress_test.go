package egress

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/loopback"
)

// fakeEgress is a scripted egress proxy on loopback: it reads one CONNECT
// per connection, records it, and lets answer do the rest.
type fakeEgress struct {
	ln   net.Listener
	mu   sync.Mutex
	reqs []*http.Request
}

func startFakeEgress(t *testing.T, answer func(conn net.Conn, br *bufio.Reader)) *fakeEgress {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEgress{ln: ln}
	loopback.Serve(t, ln, func(conn net.Conn) {
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		answer(conn, br)
	})
	return f
}

func (f *fakeEgress) egress(auth func() (string, string, error)) *Proxy {
	return &Proxy{URL: &url.URL{Scheme: "http", Host: f.ln.Addr().String()}, Auth: auth, AuthSource: "via_auth_file /run/via"}
}

func (f *fakeEgress) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

// answers writes a fixed answer and then waits for the client to go.
func answers(s string) func(net.Conn, *bufio.Reader) {
	return func(conn net.Conn, br *bufio.Reader) {
		io.WriteString(conn, s)
		io.Copy(io.Discard, br)
	}
}

func creds(user, password string) func() (string, string, error) {
	return func() (string, string, error) { return user, password, nil }
}

const egressTarget = "api.acme.test:443"

// TestEgressTunnel: a 2xx answer opens the tunnel; bytes the egress proxy
// sent right after it are the tunnel's first bytes, none lost; the CONNECT
// carries the target, Host and the Basic credentials.
func TestEgressTunnel(t *testing.T) {
	f := startFakeEgress(t, func(conn net.Conn, br *bufio.Reader) {
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\nVia: 1.1 fake\r\n\r\nHELLO")
		io.Copy(conn, br) // then echo
	})
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := f.egress(creds("merchant", "pa:ss wörd")).dial(context.Background(), d, egressTarget)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "HELLO" {
		t.Fatalf("first tunnel bytes %q, %v; want HELLO (sent together with the answer)", got, err)
	}
	io.WriteString(conn, "ping")
	if _, err := io.ReadFull(conn, got[:4]); err != nil || string(got[:4]) != "ping" {
		t.Fatalf("echo %q, %v", got[:4], err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("merchant:pa:ss wörd"))
	for _, c := range []struct{ what, got, want string }{
		{"method", r.Method, http.MethodConnect},
		{"request target", r.RequestURI, egressTarget},
		{"Host", r.Host, egressTarget},
		{"Proxy-Authorization", r.Header.Get("Proxy-Authorization"), wantAuth},
		{"User-Agent", r.Header.Get("User-Agent"), egressUserAgent},
	} {
		if c.got != c.want {
			t.Errorf("CONNECT %s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

// TestEgressNoAnswerBytes: without bytes after the answer the tunnel is the
// socket itself, so the idle-connection liveness check can peek at it.
func TestEgressNoAnswerBytes(t *testing.T) {
	f := startFakeEgress(t, answers("HTTP/1.0 200 OK\r\n\r\n"))
	conn, err := f.egress(nil).dial(context.Background(), &net.Dialer{Timeout: 5 * time.Second}, egressTarget)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*net.TCPConn); !ok {
		t.Errorf("tunnel is a %T, want the *net.TCPConn", conn)
	}
	if h := f.requests()[0].Header.Get("Proxy-Authorization"); h != "" {
		t.Errorf("Proxy-Authorization %q sent without credentials", h)
	}
}

// TestEgressRefusals: every answer but 2xx, no answer, and no egress proxy
// at all are *Error values naming the egress proxy, the target and
// the status line (never the body, never the password), with advice.
func TestEgressRefusals(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	const secret = "hunter2-secret"
	tests := []struct {
		name   string
		answer func(net.Conn, *bufio.Reader) // nil: nothing listens
		auth   func() (string, string, error)
		code   int
		msg    []string
		advice []string
		within time.Duration // 0: no bound beyond the test's
	}{
		{"407 without credentials", answers("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n" +
			"Content-Length: 10\r\n\r\nbody-bytes"), nil, 407,
			[]string{"407 Proxy Authentication Required"}, []string{"requires authentication", "via_auth_file"}, 0},
		{"407 wrong credentials", answers("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\r\n"),
			creds("merchant", secret), 407, []string{"407"}, []string{"refused the user and password", "via_auth_file /run/via"}, 0},
		{"407 Negotiate only", answers("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\n" +
			"Proxy-Authenticate: NTLM\r\n\r\n"), creds("merchant", secret), 407, []string{"407"}, []string{"Negotiate, NTLM", "only Basic"}, 0},
		{"403", answers("HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n\r\n<html>denied-page</html>"), nil, 403,
			[]string{"403 Forbidden"}, []string{"allow CONNECT to " + egressTarget}, 0},
		{"502", answers("HTTP/1.1 502 Bad Gateway\r\n\r\n"), nil, 502, []string{"502 Bad Gateway"}, []string{"could not reach " + egressTarget}, 0},
		{"504", answers("HTTP/1.1 504 Gateway Timeout\r\n\r\n"), nil, 504, []string{"504 Gateway Timeout"}, []string{"could not reach"}, 0},
		{"other status", answers("HTTP/1.1 418 I'm a teapot\r\n\r\n"), nil, 418, []string{"418 I'm a teapot"}, []string{"egress proxy's logs"}, 0},
		{"interim answer", answers("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), nil, 100, []string{"100 Continue"}, nil, 0},
		{"no answer within the dial timeout", func(conn net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) }, nil, 0,
			[]string{"did not answer CONNECT " + egressTarget, "within 300ms (timeouts.dial)"}, []string{"timeouts.dial"}, 3 * time.Second},
		{"half an answer, then silence", func(conn net.Conn, br *bufio.Reader) {
			io.WriteString(conn, "HTTP/1.1 200 Conn")
			io.Copy(io.Discard, br)
		}, nil, 0, []string{"did not answer"}, nil, 3 * time.Second},
		{"closed without answer", func(net.Conn, *bufio.Reader) {}, nil, 0, []string{"gave no answer"}, []string{"closed the connection", "3128"}, 0},
		{"malformed answer", answers("SSH-2.0-OpenSSH_9.2\r\n\r\n"), nil, 0, []string{"not an HTTP answer"}, []string{"HTTP port"}, 0},
		{"bad status code", answers("HTTP/1.1 2000 OK\r\n\r\n"), nil, 0, []string{"not an HTTP answer"}, nil, 0},
		{"status code 000", answers("HTTP/1.1 000 Nothing\r\n\r\n"), nil, 0, []string{"not an HTTP answer", "status code 000"}, nil, 0},
		{"endless header", func(conn net.Conn, br *bufio.Reader) {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nX: ")
			for range 100 { // more than maxEgressAnswer, bounded
				if _, err := io.WriteString(conn, strings.Repeat("a", 1<<10)); err != nil {
					return
				}
			}
			io.Copy(io.Discard, br)
		}, nil, 0, []string{"not an HTTP answer", "longer than 64 KiB"}, nil, 3 * time.Second},
		{"nothing listening", nil, nil, 0, []string{"connecting to the egress proxy http://" + closedAddr}, []string{"check via"}, 0},
		{"credentials unreadable", answers("HTTP/1.1 200 OK\r\n\r\n"), func() (string, string, error) {
			return "", "", errors.New("open /run/via: permission denied")
		}, 0, []string{"reading the credentials", "via_auth_file /run/via", "permission denied"}, []string{"first line of via_auth_file /run/via"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Proxy{URL: &url.URL{Scheme: "http", Host: closedAddr}, Auth: tt.auth, AuthSource: "via_auth_file /run/via"}
			var f *fakeEgress
			if tt.answer != nil {
				f = startFakeEgress(t, tt.answer)
				e = f.egress(tt.auth)
			}
			start := time.Now()
			conn, err := e.dial(context.Background(), &net.Dialer{Timeout: 300 * time.Millisecond}, egressTarget)
			took := time.Since(start)
			if err == nil {
				conn.Close()
				t.Fatal("dial succeeded, want a refusal")
			}
			var ee *Error
			if !errors.As(err, &ee) {
				t.Fatalf("error %T %v, want an *Error", err, err)
			}
			if ee.StatusCode() != tt.code {
				t.Errorf("StatusCode %d, want %d", ee.StatusCode(), tt.code)
			}
			msg, advice := ee.Error(), ee.Advice()
			for _, w := range append(tt.msg, e.URL.String()) {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			for _, w := range tt.advice {
				if !strings.Contains(advice, w) {
					t.Errorf("advice %q lacks %q", advice, w)
				}
			}
			for _, never := range []string{secret, "body-bytes", "denied-page", "aaaa"} {
				if strings.Contains(msg+advice, never) {
					t.Errorf("message or advice shows %q: %s; %s", never, msg, advice)
				}
			}
			if tt.within > 0 && took > tt.within {
				t.Errorf("took %s, want under %s (the dial timeout bounds the answer)", took, tt.within)
			}
			if tt.name == "credentials unreadable" && len(f.requests()) != 0 {
				t.Error("dialled the egress proxy without credentials to send")
			}
		})
	}
}

// TestEgressCancel: a request that goes away stops the CONNECT at once, and
// the error says the client cancelled (classify: client_closed), not that
// the egress proxy failed.
func TestEgressCancel(t *testing.T) {
	reading := make(chan struct{})
	f := startFakeEgress(t, func(conn net.Conn, br *bufio.Reader) {
		close(reading)
		io.Copy(io.Discard, br)
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-reading; cancel() }()
	start := time.Now()
	_, err := f.egress(nil).dial(ctx, &net.Dialer{Timeout: time.Minute}, egressTarget)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want one that is context.Canceled", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s after the cancel", took)
	}
}

// TestEgressFinal: which refusals of the egress proxy a retry could change.
func TestEgressFinal(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&Error{step: stepRefused, code: 403}, true},
		{&Error{step: stepRefused, code: 407}, true},
		{fmt.Errorf("connecting to %s: %w", egressTarget, &Error{step: stepRefused, code: 407}), true}, // as the TLS dial wraps it
		{&Error{step: stepCredentials}, true},
		{&Error{step: stepMalformed}, true},
		{&Error{step: stepRefused, code: 502}, false},
		{&Error{step: stepRefused, code: 503}, false},
		{&Error{step: stepAnswer, err: io.EOF}, false},
		{&Error{step: stepConnect, err: errors.New("connection refused")}, false},
		{fmt.Errorf("connecting to %s: %w", egressTarget, errors.New("connection refused")), false},
	} {
		if got := Final(tt.err); got != tt.want {
			t.Errorf("Final(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
