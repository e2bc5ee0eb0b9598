package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// defaultHealthURL is the readiness endpoint of a proxy started with the
// default admin_listen; without --url, health asks the configured one.
var defaultHealthURL = "http://" + config.DefaultAdminListen + "/readyz"

// Limits on what health reads of an unhealthy answer: enough for /readyz's
// reasons, small enough that a misdirected URL cannot flood a probe log.
const (
	healthBodyLimit   = 8 << 10
	healthReasonLimit = 300
)

func init() {
	register(command{name: "health", summary: "ask the admin endpoint; exit 0 on 200 (Docker HEALTHCHECK, exec probes)", order: 70, run: runHealth})
}

// runHealth asks one admin URL and turns the answer into an exit code, for
// images without a shell or curl: 0 on 200, 1 with the reason on stderr
// otherwise, 2 on a bad command line or configuration. Without --url it
// asks /readyz at the admin address serve would listen on (healthURL).
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	rawURL := fs.String("url", "", "admin `URL` to ask; /healthz for liveness, /readyz for readiness "+
		"(default: /readyz at the configured admin_listen, as serve reads it, else "+defaultHealthURL+")")
	configPath := fs.String("config", "", "configuration `file` whose admin_listen to ask (env PAYRAILS_PROXY_CONFIG)")
	adminListen := fs.String("admin-listen", "", "admin listen `HOST:PORT` to ask, as serve's flag (env PAYRAILS_PROXY_ADMIN_LISTEN)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this `duration` (connect, headers and body)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy health [--url URL | --config FILE | --admin-listen HOST:PORT] [--timeout DURATION]")
		fmt.Fprintln(fs.Output(), "\nExits 0 when the URL answers 200, 1 (with the reason on stderr) otherwise.")
		fmt.Fprintln(fs.Output(), "Without --url it asks /readyz at the admin address serve would listen on:")
		fmt.Fprintln(fs.Output(), "--admin-listen, else PAYRAILS_PROXY_ADMIN_LISTEN, else admin_listen in the file of")
		fmt.Fprintln(fs.Output(), "--config or PAYRAILS_PROXY_CONFIG, else "+config.DefaultAdminListen+"; all interfaces are asked on loopback.")
		fmt.Fprintln(fs.Output(), "Proxy environment variables are ignored and redirects are not followed.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "health: --timeout: %v is not positive; use a duration such as 2s\n", *timeout)
		return exitUsage
	}
	var u *url.URL
	if *rawURL != "" {
		var err error
		if u, err = healthTarget(*rawURL); err != nil {
			fmt.Fprintf(stderr, "health: --url: %v\n", err)
			return exitUsage
		}
	} else {
		if *configPath == "" {
			*configPath = os.Getenv("PAYRAILS_PROXY_CONFIG")
		}
		var err error
		if u, err = healthURL(*configPath, os.LookupEnv, *adminListen); err != nil {
			fmt.Fprintf(stderr, "health: %v\n", err)
			return exitUsage
		}
	}
	status, err := probeHealth(ctx, u, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "health: %s: %v\n", u, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "health: %s: %s\n", u, status)
	return exitOK
}

// healthURL is the /readyz URL of the admin listener serve would open with
// the same configuration file, environment and --admin-listen flag. An
// address on all interfaces (0.0.0.0, ::, or no host, as the image's
// 0.0.0.0:9090) is asked on loopback of the same family, since a probe runs
// beside the proxy (the same container or network namespace).
func healthURL(configPath string, lookupEnv func(string) (string, bool), flagValue string) (*url.URL, error) {
	addr, err := config.AdminListen(configPath, lookupEnv, flagValue)
	if err != nil {
		return nil, fmt.Errorf("cannot tell which admin address to ask: %s; fix the configuration, or pass --url",
			strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	host, port, _ := net.SplitHostPort(addr) // AdminListen checked it
	if port == "0" {
		return nil, fmt.Errorf("admin_listen %s has port 0, a free port picked when serve starts, which health cannot know; "+
			"give the admin listener a fixed port, or pass --url", addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/readyz"}, nil
}

// healthTarget checks that raw is an absolute http(s) URL with a host.
func healthTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL; use one such as %s", raw, defaultHealthURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q has no host; use one such as %s", raw, defaultHealthURL)
	}
	return u, nil
}

// probeHealth sends one GET and returns the status line of a 200 answer, or
// an error that says what went wrong in an operator's words.
func probeHealth(ctx context.Context, u *url.URL, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{
		Transport: &http.Transport{
			// A probe asks this address, never a proxy from the environment:
			// NO_PROXY is often unset for 127.0.0.1 in images that set HTTP_PROXY.
			Proxy:             nil,
			DisableKeepAlives: true, // one request per process; leave nothing behind
		},
		// A redirect is an answer, not the health of its target.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", "payrails-mtls-proxy-health/"+version)
	resp, err := client.Do(req)
	if err != nil {
		return "", explainHealthError(err, u, timeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.Status, nil
	}
	msg := "status " + resp.Status
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
		msg += " (redirect to " + loc + ", not followed)"
	}
	if reason := bodyReason(resp); reason != "" {
		msg += ": " + reason
	}
	return "", errors.New(msg)
}

// explainHealthError names the usual failures of a probe.
func explainHealthError(err error, u *url.URL, timeout time.Duration) error {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connection refused: nothing listens on %s; is the proxy running, and is admin_listen "+
			"(PAYRAILS_PROXY_ADMIN_LISTEN) this address?", u.Host)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return fmt.Errorf("timeout: no answer within %v", timeout)
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted before an answer")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err // the URL is already in the message
	}
	return err
}

// bodyReason condenses the start of an unhealthy answer to one line: JSON
// (such as /readyz's per-upstream reasons, which are indented) compacted,
// anything else its first non-empty line.
func bodyReason(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
	var line string
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		var buf bytes.Buffer
		if json.Compact(&buf, body) == nil {
			line = buf.String()
		}
	}
	if line == "" {
		for l := range strings.SplitSeq(string(body), "\n") {
			if line = strings.TrimSpace(l); line != "" {
				break
			}
		}
	}
	line = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, line)
	if len(line) > healthReasonLimit {
		line = strings.ToValidUTF8(line[:healthReasonLimit], "") + "..."
	}
	return line
}
