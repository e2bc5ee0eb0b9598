package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// The interop clients upload and download these sizes of standin.Pattern.
const (
	interopUpload   = 1<<20 + 123
	interopDownload = 10 << 20
)

// interopResult is one line a client prints: an operation, its status, and
// either the echo body or the digest of a download.
type interopResult struct {
	Op     string `json:"op"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// nginxAPI is nginx with ssl_verify_client on in front of the stand-in's
// endpoints: the upstream is a server no one here wrote. nginx passes its
// verdict on the client certificate to the echo in headers.
func nginxAPI(t testing.TB, p *tokenPKI) *nginxServer {
	t.Helper()
	backend := httptest.NewServer(standin.Handler(standin.Options{}))
	t.Cleanup(backend.Close)
	loc := fmt.Sprintf(`
    client_max_body_size 0;
    location / {
      proxy_pass %s;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_set_header Host $host;
      proxy_set_header X-Client-Verify $ssl_client_verify;
      proxy_set_header X-Client-Serial $ssl_client_serial;
      proxy_set_header X-Client-Subject $ssl_client_s_dn;
    }`, backend.URL)
	return startNginx(t, p.serverCert, p.serverKey, p.caFile, loc)
}

func patternDigest(n int) string {
	h := sha256.New()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = standin.Pattern(int64(i))
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

// checkInterop verifies a client's four operations arrived intact.
func checkInterop(t *testing.T, name, serial string, results []interopResult) {
	t.Helper()
	byOp := map[string]interopResult{}
	for _, r := range results {
		byOp[r.Op] = r
	}
	echo := func(op string) standin.Echo {
		r, ok := byOp[op]
		if !ok || r.Status != http.StatusOK {
			t.Fatalf("%s: %+v", op, r)
		}
		var e standin.Echo
		if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
			t.Fatalf("%s: echo %q: %v", op, r.Body, err)
		}
		if got := e.Header["X-Client-Verify"]; len(got) != 1 || got[0] != "SUCCESS" {
			t.Errorf("%s: nginx client-certificate verdict %v", op, got)
		}
		if got := strings.Join(e.Header["X-Client-Serial"], ""); !strings.EqualFold(got, serial) {
			t.Errorf("%s: nginx saw client certificate serial %q, want %s", op, got, serial)
		}
		if got := strings.Join(e.Header["X-Interop"], ""); got != name {
			t.Errorf("%s: X-Interop %q, want %q", op, got, name)
		}
		for _, h := range []string{"Proxy-Authorization", "Proxy-Connection"} {
			if _, ok := e.Header[h]; ok {
				t.Errorf("%s: %s reached the upstream", op, h)
			}
		}
		return e
	}
	if e := echo("get"); e.Method != "GET" || e.Path != "/v1/echo" || e.Query != "q=1" || e.Host != apiHost {
		t.Errorf("get arrived as %s %s?%s host %s", e.Method, e.Path, e.Query, e.Host)
	}
	payment := `{"amount":1000,"currency":"EUR"}`
	sum := sha256.Sum256([]byte(payment))
	if e := echo("post"); e.Method != "POST" || e.BodySHA256 != hex.EncodeToString(sum[:]) ||
		strings.Join(e.Header["X-Idempotency-Key"], "") != "key-"+name ||
		!strings.HasPrefix(strings.Join(e.Header["Content-Type"], ""), "application/json") {
		t.Errorf("post arrived as %s, %d bytes (sha %s), headers %v", e.Method, e.BodyBytes, e.BodySHA256, e.Header)
	}
	if e := echo("upload"); e.BodyBytes != interopUpload || e.BodySHA256 != patternDigest(interopUpload) {
		t.Errorf("upload arrived with %d bytes (sha %s), want %d intact", e.BodyBytes, e.BodySHA256, interopUpload)
	}
	if d := byOp["download"]; d.Status != 200 || d.Bytes != interopDownload || d.SHA256 != patternDigest(interopDownload) {
		t.Errorf("download: status %d, %d bytes (sha %s), want %d intact", d.Status, d.Bytes, d.SHA256, interopDownload)
	}
}

func parseResults(t testing.TB, out []byte) []interopResult {
	t.Helper()
	var rs []interopResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r interopResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("client output line %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs
}

func runClient(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Args, err, stderr.String())
	}
	return out
}

// curlOps performs the four operations with curl.
func curlOps(t *testing.T, curl, base, name string, extra ...string) []interopResult {
	dir := t.TempDir()
	up := filepath.Join(dir, "upload")
	data := make([]byte, interopUpload)
	for i := range data {
		data[i] = standin.Pattern(int64(i))
	}
	mustWrite(t, up, data, 0o600)
	hdr := []string{"-H", "X-Interop: " + name}
	c := func(args ...string) []byte {
		cmd := exec.Command(curl, append(append(append([]string{"-sS", "-f"}, extra...), hdr...), args...)...)
		cmd.Env = append(os.Environ(), "no_proxy=", "NO_PROXY=")
		return runClient(t, cmd)
	}
	res := []interopResult{
		{Op: "get", Status: 200, Body: string(c(base + "/v1/echo?q=1"))},
		{Op: "post", Status: 200, Body: string(c("-H", "Content-Type: application/json", "-H", "X-Idempotency-Key: key-"+name,
			"--data-binary", `{"amount":1000,"currency":"EUR"}`, base+"/v1/payments"))},
		{Op: "upload", Status: 200, Body: string(c("-H", "Content-Type: application/octet-stream", "-H", "Transfer-Encoding: chunked",
			"--data-binary", "@"+up, base+"/v1/upload"))},
	}
	dl := filepath.Join(dir, "download")
	c("-o", dl, fmt.Sprintf("%s/bytes/%d", base, interopDownload))
	got, err := os.ReadFile(dl)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	return append(res, interopResult{Op: "download", Status: 200, Bytes: int64(len(got)), SHA256: hex.EncodeToString(sum[:])})
}

// TestInterop: real clients (curl, Python urllib, Go net/http, Java
// HttpURLConnection) through the real sidecar to a real nginx with
// ssl_verify_client on, each sending a GET, a JSON POST with an
// idempotency key, a chunked upload and a 10 MiB download.
func TestInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx and several client runtimes")
	}
	open, authed, serial := interopApps(t)
	target := "http://" + apiHost

	t.Run("curl http_proxy", func(t *testing.T) {
		curl := interop.Tool(t, "curl")
		t.Setenv("http_proxy", "http://"+open.addr)
		checkInterop(t, "curl-env", serial, curlOps(t, curl, target, "curl-env"))
	})
	t.Run("curl -x with credentials", func(t *testing.T) {
		curl := interop.Tool(t, "curl")
		checkInterop(t, "curl-x", serial, curlOps(t, curl, target, "curl-x", "-x", "http://svc:s3cret-pw@"+authed.addr))
	})
	t.Run("curl base URL", func(t *testing.T) {
		curl := interop.Tool(t, "curl")
		checkInterop(t, "curl-base", serial, curlOps(t, curl, "http://"+open.addr, "curl-base"))
	})
	t.Run("python urllib http_proxy", func(t *testing.T) {
		py := interop.Tool(t, "python3")
		cmd := exec.Command(py, "testdata/interop/client.py", target, "python")
		cmd.Env = append(os.Environ(), "http_proxy=http://svc:s3cret-pw@"+authed.addr, "no_proxy=", "NO_PROXY=")
		checkInterop(t, "python", serial, parseResults(t, runClient(t, cmd)))
	})
	t.Run("go ProxyFromEnvironment", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "goclient")
		build := exec.Command("go", "build", "-o", bin, "./testdata/interop/goclient")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the Go client: %v\n%s", err, out)
		}
		cmd := exec.Command(bin, target, "go")
		cmd.Env = append(os.Environ(), "HTTP_PROXY=http://"+open.addr, "NO_PROXY=", "no_proxy=")
		checkInterop(t, "go", serial, parseResults(t, runClient(t, cmd)))
	})
	t.Run("java HttpURLConnection", func(t *testing.T) {
		javac := interop.Tool(t, "javac")
		classes := t.TempDir()
		if out, err := exec.Command(javac, "-d", classes, "testdata/interop/Interop.java").CombinedOutput(); err != nil {
			t.Fatalf("javac: %v\n%s", err, out)
		}
		host, port, _ := net.SplitHostPort(open.addr)
		cmd := exec.Command("java", "-Dhttp.proxyHost="+host, "-Dhttp.proxyPort="+port, "-cp", classes, "Interop", target, "java")
		checkInterop(t, "java", serial, parseResults(t, runClient(t, cmd)))
	})
}

// interopApps starts nginx requiring a client certificate, and two
// sidecars in front of it: open, and authed, which requires the proxy
// credentials svc:s3cret-pw. serial is the client certificate's.
func interopApps(t *testing.T) (open, authed *running, serial string) {
	t.Helper()
	p := newTokenPKI(t)
	ng := nginxAPI(t, p)
	certDir := t.TempDir()
	for _, f := range []string{p.clientCert, p.clientKey} {
		data, _ := os.ReadFile(f)
		mustWrite(t, filepath.Join(certDir, filepath.Base(f)), data, 0o600)
	}
	users := filepath.Join(t.TempDir(), "users")
	mustWrite(t, users, []byte("svc:s3cret-pw\n"), 0o600)
	cfg := func(extra string) string {
		y := fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nlog: {level: warn}\n%supstreams:\n"+
			"  - {name: live, url: \"https://%s\", address: \"%s\", cert_dir: \"%s\", ca_file: \"%s\"}\n",
			extra, apiHost, ng.addr, certDir, p.caFile)
		path := filepath.Join(t.TempDir(), "config.yaml")
		mustWrite(t, path, []byte(y), 0o600)
		return path
	}
	open = startApp(t, cfg(""))
	authed = startApp(t, cfg(fmt.Sprintf("access: {proxy_auth_file: \"%s\"}\n", users)))
	return open, authed, serialOfFile(t, p.clientCert)
}

func serialOfFile(t testing.TB, certFile string) string {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s holds no PEM", certFile)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return certs.Serial(c)
}
