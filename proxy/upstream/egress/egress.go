package egress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Egress through another proxy (DESIGN.md § Egress through another proxy,
// issue 18). With via, every connection to an upstream is a tunnel that a
// corporate egress proxy opens on a CONNECT request (RFC 9110 §9.3.6) to
// the upstream's dial address, so that Payrails sees the egress proxy's
// fixed IPs. The TLS handshake with the upstream runs inside the tunnel,
// unchanged (same server name, same verification, same client
// certificate): the egress proxy sees the target's HOST:PORT and
// ciphertext, never a request.

// Proxy is an egress proxy that the connections to an upstream go through.
type Proxy struct {
	// URL is the egress proxy, http://HOST:PORT (config.ParseVia's form);
	// required.
	URL *url.URL
	// Auth, when not nil, returns the user and password sent as
	// Proxy-Authorization: Basic (RFC 7617) with every CONNECT. It is
	// called at every dial, so that rotated credentials are used without a
	// restart; an error fails the dial. nil sends no credentials.
	Auth func() (user, password string, err error)
	// AuthSource names where Auth reads from, for messages, such as
	// "via_auth_file /run/secrets/egress"; never the secret itself.
	AuthSource string
}

// Limits of the egress proxy's answer to CONNECT.
const (
	// maxEgressAnswer bounds the bytes read for the answer's head: a
	// status line and a few headers in practice.
	maxEgressAnswer = 64 << 10
	egressUserAgent = "payrails-mtls-proxy"
)

// Check validates e; a nil Proxy (no via) is valid.
func (e *Proxy) Check() error {
	if e == nil {
		return nil
	}
	if e.URL == nil || e.URL.Scheme != "http" || e.URL.Hostname() == "" || e.URL.Port() == "" {
		return fmt.Errorf("the egress proxy (via) must be http://HOST:PORT, got %v", redacted(e.URL))
	}
	// EgressError prints the URL: credentials in it would reach logs and
	// error bodies. They belong in Auth (via_auth_file).
	if e.URL.User != nil {
		return fmt.Errorf("the egress proxy (via) %s carries credentials in its URL: give http://HOST:PORT and put "+
			"\"user:password\" in a file named by via_auth_file (--via-auth-file for check and token)", e.URL.Redacted())
	}
	return nil
}

// redacted is u without its password, for messages; "<nil>" for nil.
func redacted(u *url.URL) string {
	if u == nil {
		return "<nil>"
	}
	return u.Redacted()
}

// Dialer opens connections through an egress proxy: a context dialer, like
// *net.Dialer, so that the upstream client's TLS dial runs over either
// (as ghostunnel's certloader dials over any dialer). The zero value is not
// usable: Proxy is required.
type Dialer struct {
	Proxy *Proxy
	// Forward connects to the egress proxy; its Timeout (timeouts.dial)
	// bounds the whole exchange, CONNECT and answer included. nil means a
	// net.Dialer without a timeout (ctx alone bounds it).
	Forward *net.Dialer
}

// DialContext opens a tunnel to target (HOST:PORT; network must be
// "tcp"): it connects to the egress proxy, sends CONNECT and reads the
// answer, all within Forward.Timeout and ctx. Anything but a 2xx answer is
// refused. Failures are *Error.
func (d Dialer) DialContext(ctx context.Context, network, target string) (net.Conn, error) {
	fwd := d.Forward
	if fwd == nil {
		fwd = &net.Dialer{}
	}
	if network != "tcp" {
		return nil, fmt.Errorf("egress: network %q: only tcp goes through an egress proxy", network)
	}
	return d.Proxy.dial(ctx, fwd, target)
}

// dial is DialContext with the forward dialer d.
func (e *Proxy) dial(ctx context.Context, d *net.Dialer, target string) (net.Conn, error) {
	fail := &Error{proxy: e.URL.String(), target: target, authSource: e.AuthSource, timeout: d.Timeout}
	authz := ""
	if e.Auth != nil {
		user, password, err := e.Auth()
		if err != nil {
			fail.step, fail.err = stepCredentials, err
			return nil, fail
		}
		authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		fail.sentAuth = true
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	conn, err := d.DialContext(ctx, "tcp", e.URL.Host)
	if err != nil {
		fail.step, fail.err = stepConnect, err
		return nil, fail
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// A cancelled request stops the exchange at once, not at the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	tunnel, err := connect(conn, target, authz, fail)
	if !stop() && err == nil {
		fail.step, err = stepAnswer, ctx.Err() // the deadline was moved into the past: the tunnel is unusable
	}
	if err == nil {
		_ = conn.SetDeadline(time.Time{})
		return tunnel, nil
	}
	conn.Close()
	if err != error(fail) { // no answer, or not HTTP: keep the cause
		fail.err = err
		if errors.Is(ctx.Err(), context.Canceled) {
			fail.err = fmt.Errorf("%w (%v)", context.Canceled, err) // the client went away, not the egress proxy
		}
	}
	return nil, fail
}

// connect sends CONNECT target on conn and reads the answer's head. On a
// 2xx answer it returns the tunnel: conn, or, when the egress proxy sent
// bytes after its answer (the start of the server's stream), a connection
// that returns those first. A refusal fills in fail and returns it.
func connect(conn net.Conn, target, authz string, fail *Error) (net.Conn, error) {
	var req strings.Builder
	req.WriteString("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n")
	if authz != "" {
		req.WriteString("Proxy-Authorization: " + authz + "\r\n")
	}
	req.WriteString("User-Agent: " + egressUserAgent + "\r\n\r\n")
	fail.step = stepAnswer
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return nil, err
	}
	lr := &io.LimitedReader{R: conn, N: maxEgressAnswer}
	br := bufio.NewReader(lr)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	switch {
	case err != nil && lr.N == 0:
		fail.step = stepMalformed
		return nil, fmt.Errorf("the answer's head is longer than %d KiB", maxEgressAnswer>>10)
	case err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
		fail.step = stepMalformed
		return nil, err
	case err != nil:
		return nil, err
	}
	if resp.StatusCode < 100 { // net/http reads "000" as a status (RFC 9110 §15: 100 to 599)
		fail.step = stepMalformed
		return nil, fmt.Errorf("status code %03d", resp.StatusCode)
	}
	// A 2xx answer has no content (RFC 9110 §9.3.6): the body is never read,
	// and whatever follows the head belongs to the tunnel.
	if resp.StatusCode/100 != 2 {
		fail.step, fail.code, fail.status = stepRefused, resp.StatusCode, statusLine(resp)
		for _, c := range resp.Header.Values("Proxy-Authenticate") {
			if scheme, _, _ := strings.Cut(strings.TrimSpace(c), " "); scheme != "" {
				fail.challenges = append(fail.challenges, scheme)
			}
		}
		return nil, fail
	}
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		return &prefixConn{Conn: conn, prefix: bytes.Clone(rest)}, nil
	}
	return conn, nil
}

// statusLine is the answer's status without the protocol version, such as
// "403 Forbidden"; the reason phrase is the egress proxy's own.
func statusLine(resp *http.Response) string {
	if s := strings.TrimSpace(resp.Status); s != "" {
		return s
	}
	return fmt.Sprint(resp.StatusCode)
}

// prefixConn is a tunnel whose first bytes were read together with the
// egress proxy's answer: Read returns them first. It hides the socket
// (syscall.Conn) on purpose: the idle-connection liveness check
// (h1alive_unix.go) would not see the bytes held here, and falls back to
// asking crypto/tls instead.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// The steps of an egress dial that can fail.
const (
	stepCredentials = "credentials" // Auth failed
	stepConnect     = "connect"     // no TCP connection to the egress proxy
	stepAnswer      = "answer"      // no answer to CONNECT (timeout, closed)
	stepMalformed   = "malformed"   // an answer that is not HTTP
	stepRefused     = "refused"     // a non-2xx answer
)

// Error is a tunnel the egress proxy (via) did not open: its answer
// to CONNECT was not 2xx, or there was no (HTTP) answer, or no connection
// to it, or its credentials could not be read. The proxy answers it with
// 502 upstream_unreachable; Error says what happened, Advice what to do.
// The message names the egress proxy, the target and the status line of
// its answer, never its body or the credentials.
type Error struct {
	proxy, target string
	step          string
	code          int    // the answer's status code, for stepRefused
	status        string // its status line without the version, e.g. "403 Forbidden"
	challenges    []string
	sentAuth      bool // Proxy-Authorization was sent
	authSource    string
	timeout       time.Duration
	err           error
}

// Final reports a refusal of the egress proxy that a retry would
// only repeat: its 4xx answers (403 by policy; 407, where sending wrong
// credentials again may lock the account), an answer that is not HTTP,
// unreadable credentials. No answer, no connection and its 5xx (it could
// not reach the upstream) may pass, and are retried like any dial.
func Final(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.step {
	case stepCredentials, stepMalformed:
		return true
	case stepRefused:
		return e.code < 500
	}
	return false
}

// StatusCode is the egress proxy's answer to CONNECT, or 0 when it gave
// none.
func (e *Error) StatusCode() int { return e.code }

func (e *Error) Error() string {
	via := "the egress proxy " + e.proxy + " (via)"
	switch e.step {
	case stepCredentials:
		return fmt.Sprintf("reading the credentials for %s from %s: %v", via, e.authSource, e.err)
	case stepConnect:
		return fmt.Sprintf("connecting to %s: %v", via, e.err)
	case stepMalformed:
		return fmt.Sprintf("%s answered CONNECT %s with something that is not an HTTP answer: %v", via, e.target, e.err)
	case stepRefused:
		return fmt.Sprintf("%s answered CONNECT %s with %s", via, e.target, e.status)
	}
	if isTimeout(e.err) {
		return fmt.Sprintf("%s did not answer CONNECT %s within %s (timeouts.dial): %v", via, e.target, e.timeout, e.err)
	}
	return fmt.Sprintf("%s gave no answer to CONNECT %s: %v", via, e.target, e.err)
}

func (e *Error) Unwrap() error { return e.err }

// Advice says what to do about the failure, for the operator.
func (e *Error) Advice() string {
	const httpPort = "check that via points at the egress proxy's HTTP port (squid's is usually 3128), not at a TLS or SOCKS port"
	switch e.step {
	case stepCredentials:
		return fmt.Sprintf("put \"user:password\" for the egress proxy on the first line of %s; it is read again at every connection", e.authSource)
	case stepConnect:
		return "check via (the egress proxy's HOST:PORT) and that the egress proxy runs and accepts connections from this host"
	case stepMalformed:
		return httpPort
	case stepRefused:
		return e.refusalAdvice()
	}
	if isTimeout(e.err) {
		return "check via and the network path to the egress proxy; a loaded egress proxy may need a longer timeouts.dial"
	}
	return "it closed the connection without answering: " + httpPort + ", and see the egress proxy's logs"
}

func (e *Error) refusalAdvice() string {
	switch e.code {
	case http.StatusProxyAuthRequired:
		basic := len(e.challenges) == 0
		for _, c := range e.challenges {
			basic = basic || strings.EqualFold(c, "Basic")
		}
		switch {
		case !basic:
			return fmt.Sprintf("the egress proxy asks for %s authentication, but this proxy sends only Basic: ask its "+
				"operators for a user with Basic authentication, or for this host's address to be allowed without one",
				strings.Join(e.challenges, ", "))
		case e.sentAuth:
			return fmt.Sprintf("the egress proxy refused the user and password from %s: check them there (the file is read "+
				"again at every connection, so a corrected file is used without a restart)", e.authSource)
		}
		return "the egress proxy requires authentication: put \"user:password\" in a file and set via_auth_file " +
			"(--via-auth-file for check and token) to it"
	case http.StatusForbidden:
		return fmt.Sprintf("the egress proxy does not allow this: ask its operators to allow CONNECT to %s from this host", e.target)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return fmt.Sprintf("the egress proxy could not reach %s itself: check that it can resolve and reach that address "+
			"(and, when address is set, that it is right)", e.target)
	}
	return fmt.Sprintf("see the egress proxy's logs for why it refused CONNECT to %s", e.target)
}

// isTimeout reports an error of a deadline or timeout.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)
