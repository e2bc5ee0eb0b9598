package clientmatrix

import (
	"os/exec"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// python returns a python3 that can import module: Debian's
// /usr/bin/python3 first, where python3-requests and friends install (the
// libraries and versions the matrix documents), else the one on PATH. A
// pyenv or venv python3 on PATH may carry other versions: pip's requests
// 2.34 sends proxy credentials with a chunked body, Debian 12's 2.28 does
// not.
func python(t *testing.T, module string) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import "+module).Run() == nil {
			return path
		}
	}
	deb := map[string]string{"requests": "python3-requests", "httpx": "python3-httpx", "aiohttp": "python3-aiohttp"}[module]
	if deb == "" {
		return interop.Tool(t, "python3")
	}
	if interop.Required() {
		t.Fatalf("no python3 imports %s (%s=1); install it: apt-get install -y %s", module, interop.EnvRequire, deb)
	}
	t.Skipf("no python3 imports %s (apt-get install -y %s); set %s=1 to make this a failure", module, deb, interop.EnvRequire)
	return ""
}

func pythonClient(lib, module string, na map[string]string) *client {
	return &client{name: lib, title: "Python " + lib, na: na, run: func(t *testing.T, f *fixture, p plan) []result {
		// SSL_CERT_FILE is how a Python service trusts the local CA (requests: REQUESTS_CA_BUNDLE).
		env := []string{"SSL_CERT_FILE=" + p.CA, "REQUESTS_CA_BUNDLE=" + p.CA}
		return script(t, p, env, python(t, module), "testdata/clients.py", lib)
	}}
}

var (
	urllibClient = pythonClient("urllib", "urllib.request", map[string]string{
		"*/keepalive": "urllib.request sends `Connection: close` and opens a connection per request",
	})
	httpClientClient = pythonClient("http.client", "http.client", nil)
	requestsClient   = pythonClient("requests", "requests", map[string]string{
		"auth/chunked": "requests 2.28 (Debian 12) sends no `Proxy-Authorization` with a chunked (generator) body through an HTTP proxy, so the proxy answers 407: pass `headers={'Proxy-Authorization': ...}` yourself, give the body a length, or use requests 2.34 (pip), which sends it",
	})
	httpxClient   = pythonClient("httpx", "httpx", nil)
	aiohttpClient = pythonClient("aiohttp", "aiohttp", map[string]string{
		"forward/keepalive": "aiohttp 3.8 opens a new connection to an HTTP proxy for every http:// request (so it does with any proxy)",
		"auth/keepalive":    "aiohttp 3.8 opens a new connection to an HTTP proxy for every http:// request (so it does with any proxy)",
	})
)

func TestPythonUrllib(t *testing.T)     { t.Parallel(); runMatrix(t, urllibClient) }
func TestPythonHTTPClient(t *testing.T) { t.Parallel(); runMatrix(t, httpClientClient) }
func TestPythonRequests(t *testing.T)   { t.Parallel(); runMatrix(t, requestsClient) }
func TestPythonHTTPX(t *testing.T)      { t.Parallel(); runMatrix(t, httpxClient) }
func TestPythonAiohttp(t *testing.T)    { t.Parallel(); runMatrix(t, aiohttpClient) }
