package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/safefile"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/token"
)

func init() {
	register(command{name: "token", summary: "fetch a Payrails access token over mTLS, as the guide's curl does", order: 50, run: runToken})
}

func tokenUsage(fs *flag.FlagSet) {
	fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy token --client-id ID --upstream https://HOST (--cert-dir DIR | --cert F (--key F | --key-uri pkcs11:...)) [flags]")
	fmt.Fprintln(fs.Output(), "\nPOSTs /auth/token/<client id> with x-api-key over mutual TLS, as Payrails' guide does with curl.")
	fmt.Fprintln(fs.Output(), "The secret comes from --client-secret-file or PAYRAILS_CLIENT_SECRET, never from a flag value.")
	fs.PrintDefaults()
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	var (
		cf                             certFlags
		vf                             viaFlags
		clientID, secretFile, upstream string
		address, caFile, output        string
		timeout                        time.Duration
	)
	fs.StringVar(&clientID, "client-id", "", "the Client ID from the Payrails dashboard")
	fs.StringVar(&secretFile, "client-secret-file", "", "`file` holding the client secret (or env PAYRAILS_CLIENT_SECRET)")
	fs.StringVar(&upstream, "upstream", "", "Payrails API base `URL`, https://HOST")
	cf.register(fs)
	fs.StringVar(&address, "address", "", "dial `HOST:PORT` instead of resolving the host")
	fs.StringVar(&caFile, "ca-file", "", "extra CA certificates `file` to verify the server")
	vf.register(fs)
	fs.StringVar(&output, "output", "json", "json (the answer as received) or env (an export line for a shell)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	fs.Usage = func() { tokenUsage(fs) }
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	req, err := tokenRequest(clientID, secretFile, upstream, output)
	if err != nil {
		fmt.Fprintf(stderr, "token: %v\n", err)
		return exitUsage
	}
	src, closeToken, err := cf.open()
	if err == nil {
		defer closeToken()
	}
	var via *egress.Proxy
	if err == nil {
		via, err = vf.egress()
	}
	if err != nil {
		fmt.Fprintf(stderr, "token: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tok, raw, err := fetchToken(ctx, req, src, address, caFile, via)
	if err != nil {
		fmt.Fprintf(stderr, "token: %v\n", err)
		return exitFailure
	}
	if output == "env" {
		fmt.Fprintf(stdout, "export PAYRAILS_ACCESS_TOKEN=%s\nexport PAYRAILS_ACCESS_TOKEN_EXPIRES_IN=%d\n",
			shellQuote(tok.AccessToken), tok.ExpiresIn)
		return exitOK
	}
	stdout.Write(raw)
	if !bytes.HasSuffix(raw, []byte("\n")) {
		fmt.Fprintln(stdout)
	}
	return exitOK
}

type tokenReq struct {
	clientID string
	secret   []byte
	base     *url.URL
}

func tokenRequest(clientID, secretFile, upstream, output string) (tokenReq, error) {
	r := tokenReq{clientID: clientID}
	if clientID == "" {
		return r, errors.New("--client-id is required (the Client ID from the Payrails dashboard)")
	}
	if output != "json" && output != "env" {
		return r, fmt.Errorf("--output %q: use json or env", output)
	}
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return r, fmt.Errorf("--upstream %q: give the API base URL as https://HOST, e.g. https://api.acme.payrails.io", upstream)
	}
	r.base = &url.URL{Scheme: "https", Host: u.Host}
	switch {
	case secretFile != "":
		data, _, err := safefile.Read(secretFile, maxSecretFile)
		if err != nil {
			return r, fmt.Errorf("reading --client-secret-file: %w", err)
		}
		r.secret = firstLine(data)
	default:
		r.secret = []byte(os.Getenv("PAYRAILS_CLIENT_SECRET"))
	}
	if len(r.secret) == 0 {
		return r, errors.New("no client secret: give --client-secret-file F or set PAYRAILS_CLIENT_SECRET (never on the command line)")
	}
	return r, nil
}

// fetchToken loads the certificate exactly as the proxy would and fetches
// the token through the proxy's own upstream transport.
func fetchToken(ctx context.Context, r tokenReq, src certs.Source, address, caFile string, via *egress.Proxy) (*token.Token, []byte, error) {
	snap := certs.Load(src, time.Now())
	if err := snap.Err(); err != nil {
		return nil, nil, err
	}
	roots, err := certs.Roots(caFile)
	if err != nil {
		return nil, nil, err
	}
	up, err := upstream.New(upstream.Config{Name: "token", URL: r.base, Address: address, RootCAs: roots,
		Certificates: upstream.FixedCertificate{C: snap.Chosen.Certificate}, CertSource: src.String(), Via: via,
		Retry: config.Retry{Attempts: 1}})
	if err != nil {
		return nil, nil, err
	}
	defer up.CloseIdleConnections()
	return token.Fetch(ctx, up, r.base, r.clientID, r.secret)
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		return b[:i]
	}
	return b
}

// shellQuote quotes s for POSIX shells.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
