package proxy

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"
)

type nilSource struct{}

func (nilSource) Certificate() *tls.Certificate  { return nil }
func (nilSource) Candidates() []*tls.Certificate { return nil }
func (nilSource) Changed() <-chan struct{}       { return nil }

// FuzzRoute: whatever request target and Host header a client sends, the
// routing decision never panics, and a request only ever reaches an
// upstream whose host it names exactly (forward mode) or through a path
// (base-URL mode).
func FuzzRoute(f *testing.F) {
	p, err := New(Config{Default: "live", Upstreams: []*upstream.Client{
		fuzzClient(f, "live", "api.acme.payrails.io"),
		fuzzClient(f, "staging", "acme-api.staging.payrails.io:8443"),
	}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct{ target, host string }{
		{"http://api.acme.payrails.io/v1/x", "api.acme.payrails.io"},
		{"http://API.ACME.PAYRAILS.IO:80/x", "x"},
		{"http://api.acme.payrails.io.evil.com/", "x"},
		{"http://api.acme.payrails.io./", "x"},
		{"http://u:p@api.acme.payrails.io/", "x"},
		{"/v1/x", "acme-api.staging.payrails.io:8080"},
		{"https://acme-api.staging.payrails.io/", "x"},
		{"http://[::1]:80/", "x"},
		{"*", "x"},
		{"api.acme.payrails.io:443", "api.acme.payrails.io:443"},
	} {
		f.Add("GET", s.target, s.host)
		f.Add("CONNECT", s.target, s.host)
	}
	f.Fuzz(func(t *testing.T, method, target, host string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before any routing
		}
		up, mode, perr := p.adm.route(r)
		if (up == nil) == (perr == nil) {
			t.Fatalf("route(%q) = upstream %v, error %v: want exactly one", raw, up, perr)
		}
		if up == nil {
			if perr.Kind.Status() < 400 {
				t.Fatalf("refusal with status %d", perr.Kind.Status())
			}
			return
		}
		switch mode {
		case ModeForward, ModeForwardHTTPS:
			u := r.URL
			port := map[Mode]string{ModeForward: "80", ModeForwardHTTPS: "443"}[mode]
			scheme := map[Mode]string{ModeForward: "http", ModeForwardHTTPS: "https"}[mode]
			if u.Scheme != scheme || u.User != nil || (u.Port() != "" && u.Port() != port) ||
				!strings.EqualFold(u.Hostname(), up.Host()) {
				t.Fatalf("forward request %q routed to %s", raw, up.Host())
			}
		case ModeConnect:
			h, port, err := net.SplitHostPort(r.Host)
			if err != nil || port != "80" || !strings.EqualFold(h, up.Host()) {
				t.Fatalf("CONNECT %q routed to %s without connect: mitm", raw, up.Host())
			}
		case ModeGateway:
			if !strings.HasPrefix(r.URL.Path, "/") {
				t.Fatalf("gateway request %q without a path routed to %s", raw, up.Host())
			}
		default:
			t.Fatalf("mode %q routed to %s", mode, up.Host())
		}
	})
}

// FuzzTunnelRoute: inside a tunnel opened for one upstream, whatever
// target and Host header a request carries, it is admitted only when it
// names that upstream's host on the tunnel's port (443 intercepted, 80
// plain) or no port, in origin-form or with the tunnel's scheme and no
// user info, and never when it is a CONNECT of its own.
func FuzzTunnelRoute(f *testing.F) {
	up := fuzzClient(f, "live", "api.acme.payrails.io")
	for _, s := range []struct{ method, target, host string }{
		{"GET", "/v1/x", "api.acme.payrails.io"},
		{"GET", "/v1/x", "API.acme.payrails.io:443"},
		{"GET", "/v1/x", "api.acme.payrails.io:8443"},
		{"GET", "/v1/x", "evil.example"},
		{"GET", "https://api.acme.payrails.io/v1/x", "evil.example"},
		{"GET", "http://api.acme.payrails.io/v1/x", "api.acme.payrails.io"},
		{"GET", "https://u:p@api.acme.payrails.io/", "x"},
		{"CONNECT", "api.acme.payrails.io:443", "api.acme.payrails.io:443"},
		{"OPTIONS", "*", "api.acme.payrails.io"},
	} {
		f.Add(s.method, s.target, s.host, false)
		f.Add(s.method, strings.Replace(s.target, "https://", "http://", 1), strings.Replace(s.host, ":443", ":80", 1), true)
	}
	f.Fuzz(func(t *testing.T, method, target, host string, plain bool) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before any routing
		}
		tn := &tunnel{up: up, plain: plain}
		scheme, tport := tn.scheme()
		perr := routeTunnelled(r, tn)
		if perr != nil {
			if perr.Kind.Status() < 400 {
				t.Fatalf("refusal with status %d", perr.Kind.Status())
			}
			return
		}
		name := r.Host
		if r.URL.IsAbs() {
			if r.URL.Scheme != scheme || r.URL.User != nil {
				t.Fatalf("tunnelled %q admitted with scheme %q", raw, r.URL.Scheme)
			}
			name = r.URL.Host
		} else if !strings.HasPrefix(r.URL.Path, "/") {
			t.Fatalf("tunnelled %q admitted without a path", raw)
		}
		h, port := name, ""
		if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i:], "]") {
			h, port = name[:i], name[i+1:]
		}
		if r.Method == http.MethodConnect || !strings.EqualFold(h, up.Host()) || (port != "" && port != tport) {
			t.Fatalf("tunnelled %q admitted for the tunnel to %s", raw, up.Host())
		}
	})
}

// fuzzClient is an upstream client of host (HOST[:PORT]) without a
// certificate: routing never sends.
func fuzzClient(f *testing.F, name, host string) *upstream.Client {
	c, err := upstream.New(upstream.Config{Name: name, URL: &url.URL{Scheme: "https", Host: host}, Certificates: nilSource{}})
	if err != nil {
		f.Fatal(err)
	}
	return c
}
