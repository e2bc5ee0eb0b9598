package clientmatrix

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

// The hosts: apiHost is the one configured upstream; otherHost is not
// configured, so the proxy refuses it with 403.
const (
	apiHost   = "api.acme.test"
	otherHost = "other.acme.test"
	proxyUser = "svc"
	proxyPass = "s3cret-pw"
	// jsonBody is the JSON POST's body, sent with idemKey.
	jsonBody   = `{"amount":1234,"currency":"EUR","reference":"order-42"}`
	uploadSize = 2 << 20
)

// EnvBinary, when set, names a payrails-mtls-proxy binary to test instead
// of building this checkout's.
const EnvBinary = "PAYRAILS_PROXY_MATRIX_BINARY"

// fix is the shared world of every test: built once in TestMain.
var fix *fixture

type fixture struct {
	dir        string
	bin        string // the built payrails-mtls-proxy
	caFile     string // the upstream's CA (the proxy verifies the stand-in with it)
	mitmCA     string // ca.pem of `ca init`: what HTTPS_PROXY clients must trust
	uploadFile string // 2 MiB of pseudo-random bytes
	uploadSHA  string
	jsonSHA    string
	gzipBody   []byte // what /gzip answers, compressed
	plainGzip  []byte // the same, decompressed
	serial     string // the proxy's client certificate serial, as the stand-in sees it
	api        *standin
	open       *proxyProc // connect: mitm, no credentials
	auth       *proxyProc // connect: mitm, access.proxy_auth_file
	setupErr   error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "payrails-clientmatrix-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fix = &fixture{dir: dir}
	fix.setupErr = fix.setup()
	code := m.Run()
	fix.close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need returns the fixture, or fails t when it could not be set up.
func need(t *testing.T) *fixture {
	t.Helper()
	if fix.setupErr != nil {
		t.Fatalf("setting up the client matrix: %v", fix.setupErr)
	}
	return fix
}

func (f *fixture) setup() error {
	f.bin = filepath.Join(f.dir, "payrails-mtls-proxy")
	if bin := os.Getenv(EnvBinary); bin != "" {
		f.bin = bin // another build, such as an older one to compare with
	} else if out, err := exec.Command("go", "build", "-o", f.bin, "..").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	ca, err := pki.NewCA("client matrix CA")
	if err != nil {
		return err
	}
	server, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, DNSNames: []string{apiHost}, Server: true})
	if err != nil {
		return err
	}
	client, err := ca.Issue(pki.LeafOptions{CommonName: apiHost, Organization: "Matrix Merchant", Client: true})
	if err != nil {
		return err
	}
	f.serial = fmt.Sprintf("%X", client.Cert.SerialNumber)
	certDir := filepath.Join(f.dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return err
	}
	if _, _, err := client.WriteFiles(certDir, "domain.pem", "domain.key"); err != nil {
		return err
	}
	f.caFile = filepath.Join(f.dir, "upstream-ca.pem")
	if err := os.WriteFile(f.caFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	if err := f.makeBodies(); err != nil {
		return err
	}
	if f.api, err = startStandin(server.TLS(), ca, f.gzipBody); err != nil {
		return err
	}
	mitmDir := filepath.Join(f.dir, "mitm")
	if out, err := exec.Command(f.bin, "ca", "init", "--out-dir", mitmDir, "--host", apiHost).CombinedOutput(); err != nil {
		return fmt.Errorf("ca init: %v\n%s", err, out)
	}
	f.mitmCA = filepath.Join(mitmDir, "ca.pem")
	users := filepath.Join(f.dir, "users")
	if err := os.WriteFile(users, []byte(proxyUser+":"+proxyPass+"\n"), 0o600); err != nil {
		return err
	}
	base := fmt.Sprintf(`upstreams:
  - name: live
    url: https://%s
    address: %s
    cert_dir: %s
    ca_file: %s
connect: mitm
mitm: {ca_cert_file: %s, ca_key_file: %s}
retry: {attempts: 1}   # the 502 case must reach the client as it happened
log: {level: info, format: json}
`, apiHost, f.api.addr, certDir, f.caFile, f.mitmCA, filepath.Join(mitmDir, "ca.key"))
	if f.open, err = startProxy(f.bin, f.dir, "open", base); err != nil {
		return err
	}
	f.auth, err = startProxy(f.bin, f.dir, "auth", base+"access: {proxy_auth_file: "+users+"}\n")
	return err
}

func (f *fixture) close() {
	for _, p := range []*proxyProc{f.open, f.auth} {
		if p != nil {
			p.stop()
		}
	}
	if f.api != nil {
		f.api.close()
	}
}

func (f *fixture) makeBodies() error {
	buf := make([]byte, uploadSize)
	r := rand.NewChaCha8([32]byte{'p', 'a', 'y', 'r', 'a', 'i', 'l', 's'})
	r.Read(buf)
	f.uploadFile = filepath.Join(f.dir, "upload.bin")
	if err := os.WriteFile(f.uploadFile, buf, 0o644); err != nil {
		return err
	}
	f.uploadSHA = sha(buf)
	f.jsonSHA = sha([]byte(jsonBody))
	f.plainGzip = bytes.Repeat([]byte(`{"payments":[{"id":"pay_1","amount":1234}]}`+"\n"), 200)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(f.plainGzip)
	w.Close()
	f.gzipBody = gz.Bytes()
	return nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// arrival is what the stand-in recorded of one request.
type arrival struct {
	Method, Path, Query, Host        string
	BodySHA                          string
	BodyLen                          int64
	Framing                          string // "content-length", "chunked" or "none"
	ContentType, AcceptEncoding      string
	IdempotencyKey                   string
	ProxyAuthorization, ClientSerial string
}

// standin is the upstream: TLS that requires the client certificate, an
// echo that records every arrival by path, /gzip answering fixed
// compressed bytes, and /cut closing the connection without an answer.
type standin struct {
	addr string
	srv  *http.Server
	mu   sync.Mutex
	seen map[string][]arrival
}

func startStandin(cert tls.Certificate, ca *pki.CA, gz []byte) (*standin, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
		// HTTP/1.1 only, so that the framing that arrives is literal: Content-Length or chunked.
		NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	s := &standin{addr: ln.Addr().String(), seen: map[string][]arrival{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, gz) }),
		ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *standin) close() { s.srv.Close() }

func (s *standin) serve(w http.ResponseWriter, r *http.Request, gz []byte) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	a := arrival{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, BodySHA: hex.EncodeToString(h.Sum(nil)),
		BodyLen: n, Framing: "none", ContentType: r.Header.Get("Content-Type"), AcceptEncoding: r.Header.Get("Accept-Encoding"),
		IdempotencyKey: r.Header.Get("X-Idempotency-Key"), ProxyAuthorization: r.Header.Get("Proxy-Authorization")}
	switch {
	case len(r.TransferEncoding) > 0:
		a.Framing = strings.Join(r.TransferEncoding, ",")
	case r.Header.Get("Content-Length") != "":
		a.Framing = "content-length"
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		a.ClientSerial = fmt.Sprintf("%X", r.TLS.PeerCertificates[0].SerialNumber)
	}
	s.mu.Lock()
	s.seen[r.URL.Path] = append(s.seen[r.URL.Path], a)
	s.mu.Unlock()
	switch {
	case strings.HasSuffix(r.URL.Path, "/cut"):
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	case strings.HasSuffix(r.URL.Path, "/gzip"):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", fmt.Sprint(len(gz)))
		w.Write(gz)
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a)
	}
}

// arrivals returns what reached path.
func (s *standin) arrivals(path string) []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.seen[path]...)
}

// proxyProc is the built binary running `serve --config`, its JSON log
// kept for the checks.
type proxyProc struct {
	addr  string // 127.0.0.1:PORT
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	done  chan struct{}
}

func startProxy(bin, dir, name, cfg string) (*proxyProc, error) {
	addr, admin := freePort(), freePort()
	file := filepath.Join(dir, name+".yaml")
	cfg = fmt.Sprintf("listen: %s\nadmin_listen: %s\n", addr, admin) + cfg
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p := &proxyProc{addr: addr, cmd: exec.Command(bin, "serve", "--config", file), done: make(chan struct{})}
	p.cmd.Env = cleanEnv()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.mu.Lock()
				p.lines = append(p.lines, m)
				p.mu.Unlock()
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("proxy %s not ready within 30 s: %v; log: %v", name, err, p.lines)
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("proxy %s exited: %v", name, p.lines)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *proxyProc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd.Wait()
}

// requestLines returns the proxy's request log lines for path.
func (p *proxyProc) requestLines(path string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		if l["msg"] == "request" && l["path"] == path {
			out = append(out, l)
		}
	}
	return out
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proxyEnv are the variables that would make a client use a proxy, or
// none: every case sets its own, and nothing of the machine's leaks in.
var proxyEnv = []string{"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
	"NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY", "JAVA_TOOL_OPTIONS"}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, p := range proxyEnv {
			drop = drop || k == p
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

// run runs a client process and returns its output.
func run(cmd *exec.Cmd) ([]byte, []byte, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}
