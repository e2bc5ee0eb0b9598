package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/failure"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// viaUser and viaPassword are the one user of squid's auth port; the
// password has colons (only the user name cannot).
const (
	viaUser     = "merchant"
	viaPassword = "s3cr3t:with:colons"
)

// TestViaSquid: upstreams[].via through a real squid. One squid serves
// every case (it takes a while to start): the request reaches the mTLS
// stand-in with the merchant's certificate while squid sees only CONNECT;
// a squid that denies CONNECT, or wants credentials that are missing or
// wrong, gives 502 upstream_unreachable naming squid and its answer; a
// corrected via_auth_file is used at the next dial; check --remote and
// token work through it; and a certificate rotation still goes through it.
func TestViaSquid(t *testing.T) {
	w := newWorld(t)
	rot := newWorld(t) // the rotation case's own stand-in and folder
	sq := startSquid(t, squidSetup{connectPorts: []string{w.api.Addr, rot.api.Addr}, user: viaUser, password: viaPassword})
	leaf := w.clientCert(t, liveCN, time.Now().Add(-time.Hour))
	writeLeaf(t, leaf, w.certDir, "domain.pem", "domain.key")
	via := func(port string, more ...string) string {
		return w.configFile(t, "    via: http://"+port+"\n"+strings.Join(more, ""))
	}

	t.Run("request through squid", func(t *testing.T) {
		skip := len(sq.lines(t))
		r := startApp(t, via(sq.open))
		if s, err := echoSerial(r.client(t)); err != nil || s != serialOf(leaf) {
			t.Fatalf("forward mode through squid: serial %q, %v; want %s", s, err, serialOf(leaf))
		}
		resp, err := http.Post("http://"+r.addr+"/v1/payments", "application/json", strings.NewReader(`{"amount":100}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), serialOf(leaf)) {
			t.Fatalf("base-URL POST through squid: %d %s", resp.StatusCode, body)
		}
		r.stop() // closes the tunnels: squid logs a tunnel when it ends
		for _, l := range sq.waitLines(t, skip, 1) {
			if l.method != "CONNECT" || l.url != w.api.Addr || l.result != "TCP_TUNNEL/200" {
				t.Errorf("squid logged %q, want a CONNECT %s tunnel (TCP_TUNNEL/200)", l.raw, w.api.Addr)
			}
		}
		sq.onlyConnect(t)
	})

	t.Run("squid denies CONNECT", func(t *testing.T) {
		skip := len(sq.lines(t))
		r := startApp(t, via(sq.deny))
		before := w.api.Requests()
		detail := wantUnreachable(t, r, "http://"+apiHost+"/v1/echo")
		for _, want := range []string{"http://" + sq.deny, "403 Forbidden", "CONNECT " + w.api.Addr, "allow CONNECT to " + w.api.Addr} {
			if !strings.Contains(detail, want) {
				t.Errorf("detail %q lacks %q", detail, want)
			}
		}
		if w.api.Requests() != before {
			t.Error("the request reached the stand-in past a squid that denies it")
		}
		for _, l := range sq.waitLines(t, skip, 1) {
			if l.method != "CONNECT" || l.result != "TCP_DENIED/403" {
				t.Errorf("squid logged %q, want a denied CONNECT (TCP_DENIED/403)", l.raw)
			}
		}
	})

	t.Run("basic auth to squid", func(t *testing.T) {
		skip := len(sq.lines(t))
		r := startApp(t, via(sq.auth))
		detail := wantUnreachable(t, r, "http://"+apiHost+"/v1/echo")
		for _, want := range []string{"http://" + sq.auth, "407 Proxy Authentication Required", "via_auth_file"} {
			if !strings.Contains(detail, want) {
				t.Errorf("without via_auth_file: detail %q lacks %q", detail, want)
			}
		}
		r.stop()

		authFile := filepath.Join(t.TempDir(), "via-auth")
		mustWrite(t, authFile, []byte(viaUser+":not-the-password\n"), 0o600)
		r = startApp(t, via(sq.auth, "    via_auth_file: "+authFile+"\n"))
		detail = wantUnreachable(t, r, "http://"+apiHost+"/v1/echo")
		for _, want := range []string{"407 Proxy Authentication Required", "refused the user and password", "via_auth_file " + authFile} {
			if !strings.Contains(detail, want) {
				t.Errorf("wrong password: detail %q lacks %q", detail, want)
			}
		}
		if strings.Contains(detail, "not-the-password") {
			t.Errorf("the detail shows the password: %s", detail)
		}
		// Rotated credentials: the file is read again at the next dial.
		mustWrite(t, authFile, []byte(viaUser+":"+viaPassword+"\n"), 0o600)
		if s, err := echoSerial(r.client(t)); err != nil || s != serialOf(leaf) {
			t.Fatalf("with the corrected via_auth_file: serial %q, %v; want %s", s, err, serialOf(leaf))
		}
		for _, e := range r.logs.All() {
			if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, viaPassword) || strings.Contains(line, "not-the-password") {
				t.Errorf("logged a password: %s", line)
			}
		}
		r.stop()
		var denied, tunnels int
		poll.Until(t, "squid to log the authenticated tunnel", 15*time.Second, func() bool {
			denied, tunnels = 0, 0
			for _, l := range sq.lines(t)[skip:] {
				switch {
				case l.result == "TCP_DENIED/407":
					denied++
				case l.result == "TCP_TUNNEL/200" && l.user == viaUser:
					tunnels++
				}
			}
			return denied >= 2 && tunnels >= 1
		})
		sq.onlyConnect(t)
	})

	t.Run("check and token through squid", func(t *testing.T) {
		remote := []string{"--cert-dir", w.certDir, "--remote", "https://" + apiHost, "--address", w.api.Addr, "--ca-file", w.caFile}
		code, out, errOut := checkCmd(t, append(remote, "--via", "http://"+sq.open)...)
		flat := strings.Join(strings.Fields(out), " ")
		if code != exitOK || !strings.Contains(flat, "ACCEPTED") || !strings.Contains(flat, "through the egress proxy http://"+sq.open) {
			t.Errorf("check --via: exit %d (want 0)\n%s%s", code, out, errOut)
		}
		code, out, _ = checkCmd(t, append(remote, "--via", "http://"+sq.deny)...)
		flat = strings.Join(strings.Fields(out), " ")
		for _, want := range []string{"UNREACHABLE", "http://" + sq.deny, "403 Forbidden", "allow CONNECT to " + w.api.Addr, "NOT READY"} {
			if !strings.Contains(flat, want) {
				t.Errorf("check --via denied: output lacks %q", want)
			}
		}
		if code != exitFailure {
			t.Errorf("check --via denied: exit %d, want %d\n%s", code, exitFailure, out)
		}

		secret := filepath.Join(t.TempDir(), "secret")
		mustWrite(t, secret, []byte("s3cret"), 0o600)
		authFile := filepath.Join(t.TempDir(), "via-auth")
		mustWrite(t, authFile, []byte(viaUser+":"+viaPassword+"\n"), 0o600)
		token := []string{"token", "--client-id", "cid", "--client-secret-file", secret, "--upstream", "https://" + apiHost,
			"--address", w.api.Addr, "--ca-file", w.caFile, "--cert-dir", w.certDir, "--via", "http://" + sq.auth}
		code, out, errOut = runCLI(t, nil, append(token, "--via-auth-file", authFile)...)
		if code != exitOK || !strings.Contains(out, `"token_type":"Bearer"`) {
			t.Errorf("token --via --via-auth-file: exit %d, out %q, err %s", code, out, errOut)
		}
		code, _, errOut = runCLI(t, nil, token...)
		if code != exitFailure || !strings.Contains(errOut, "407 Proxy Authentication Required") || !strings.Contains(errOut, "--via-auth-file") {
			t.Errorf("token --via without credentials: exit %d (want %d): %s", code, exitFailure, errOut)
		}
		sq.onlyConnect(t)
	})

	t.Run("rotation through squid", func(t *testing.T) {
		old := rot.clientCert(t, liveCN, time.Now().Add(-2*time.Hour))
		writeLeaf(t, old, rot.certDir, "old.pem", "old.key")
		cfg := rot.configFile(t, "    via: http://"+sq.open+"\n    warm_connections: 1\nreload: {debounce: 50ms, poll_interval: 1s}\n")
		r := startApp(t, cfg)
		c := r.client(t)
		if s, err := echoSerial(c); err != nil || s != serialOf(old) {
			t.Fatalf("before the rotation: serial %q, %v; want %s", s, err, serialOf(old))
		}
		next := rot.clientCert(t, liveCN, time.Now().Add(-time.Hour))
		writeLeaf(t, next, rot.certDir, "next.pem", "next.key")
		poll.Until(t, "requests through squid with the new certificate "+serialOf(next), 15*time.Second, func() bool {
			s, err := echoSerial(c)
			return err == nil && s == serialOf(next)
		})
		r.stop()
		var mine []squidLine
		poll.Until(t, "squid to log a tunnel per certificate", 15*time.Second, func() bool {
			mine = mine[:0]
			for _, l := range sq.lines(t) {
				if l.url == rot.api.Addr {
					mine = append(mine, l)
				}
			}
			return len(mine) >= 2
		})
		for _, l := range mine {
			if l.method != "CONNECT" || l.result != "TCP_TUNNEL/200" {
				t.Errorf("squid logged %q, want CONNECT tunnels only", l.raw)
			}
		}
	})

	sq.onlyConnect(t)
	for _, l := range sq.lines(t) {
		t.Logf("squid: %s", l.raw)
	}
}

// wantUnreachable sends one forward-mode GET through the app and returns
// the detail of the 502 upstream_unreachable it must get.
func wantUnreachable(t *testing.T, r *running, url string) string {
	t.Helper()
	resp, err := r.client(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct {
		Errors []struct{ Code, Detail string }
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 {
		t.Fatalf("status %d, body %q: not the proxy's error: %v", resp.StatusCode, body, err)
	}
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(failure.HeaderError) != string(failure.KindUpstreamUnreachable) ||
		eb.Errors[0].Code != "proxy."+string(failure.KindUpstreamUnreachable) {
		t.Errorf("status %d, %s %q, code %q; want 502 upstream_unreachable", resp.StatusCode, failure.HeaderError,
			resp.Header.Get(failure.HeaderError), eb.Errors[0].Code)
	}
	return eb.Errors[0].Detail
}

// TestViaBadInput: a via that is not http://HOST:PORT and a missing or
// malformed via_auth_file stop serve with exit 2 naming the key; the --via
// flags of check and token refuse the same, with exit 2.
func TestViaBadInput(t *testing.T) {
	w := newWorld(t)
	writeLeaf(t, w.clientCert(t, liveCN, time.Now().Add(-time.Hour)), w.certDir, "domain.pem", "domain.key")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	noColon := filepath.Join(dir, "no-colon")
	mustWrite(t, noColon, []byte("just-a-password\n"), 0o600)
	remote := []string{"check", "--cert-dir", w.certDir, "--remote", "https://" + apiHost, "--address", w.api.Addr}
	secret := filepath.Join(dir, "secret")
	mustWrite(t, secret, []byte("s3cret"), 0o600)
	token := []string{"token", "--client-id", "cid", "--client-secret-file", secret, "--upstream", "https://" + apiHost, "--cert-dir", w.certDir}
	serve := func(extra string) []string { return []string{"serve", "--config", w.configFile(t, extra)} }
	tests := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"via https", serve("    via: https://squid.internal:3128\n"), []string{"upstreams[0].via", "must use http://", "http://HOST:PORT"}},
		{"via without port", serve("    via: http://squid.internal\n"), []string{"upstreams[0].via", "HOST:PORT"}},
		{"via with user", serve("    via: http://u:pw@squid.internal:3128\n"), []string{"upstreams[0].via", "via_auth_file"}},
		{"via_auth_file missing", serve("    via: http://127.0.0.1:3128\n    via_auth_file: " + missing + "\n"),
			[]string{"upstreams[0].via_auth_file", missing, "does not exist"}},
		{"via_auth_file without via", serve("    via_auth_file: " + noColon + "\n"), []string{"upstreams[0].via_auth_file", "via is not"}},
		{"via_auth_file not user:password", serve("    via: http://127.0.0.1:3128\n    via_auth_file: " + noColon + "\n"),
			[]string{"via_auth_file " + noColon, `"user:password"`}},
		{"check --via without --remote", []string{"check", "--cert-dir", w.certDir, "--via", "http://127.0.0.1:3128"}, []string{"only apply with --remote"}},
		{"check --via bare host", append(remote, "--via", "squid.internal:3128"), []string{"--via", "http://HOST:PORT"}},
		{"check --via-auth-file without --via", append(remote, "--via-auth-file", noColon), []string{"--via-auth-file only applies with --via"}},
		{"token --via with user", append(token, "--via", "http://u:pw@squid.internal:3128"), []string{"--via", "via-auth-file"}},
		{"token --via-auth-file missing", append(token, "--via", "http://127.0.0.1:3128", "--via-auth-file", missing), []string{"--via-auth-file " + missing}},
		{"token --via-auth-file not user:password", append(token, "--via", "http://127.0.0.1:3128", "--via-auth-file", noColon),
			[]string{"--via-auth-file " + noColon, `"user:password"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			for _, want := range tt.wants {
				if !strings.Contains(out+errOut, want) {
					t.Errorf("output lacks %q:\n%s%s", want, out, errOut)
				}
			}
			if strings.Contains(out+errOut, "just-a-password") {
				t.Errorf("the output shows the file's content:\n%s", errOut)
			}
		})
	}
}
