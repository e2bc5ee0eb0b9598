package clientmatrix

import (
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

var (
	goOnce   sync.Once
	goClient string
	goErr    error
)

// Go net/http: HTTP_PROXY / HTTPS_PROXY, SSL_CERT_FILE.
var goNetHTTP = &client{name: "net/http", title: "Go net/http", run: func(t *testing.T, f *fixture, p plan) []result {
	goOnce.Do(func() {
		goClient = filepath.Join(f.dir, "goclient")
		if out, err := exec.Command("go", "build", "-o", goClient, "./testdata/goclient").CombinedOutput(); err != nil {
			goErr = &cmdError{"go build", err, out}
		}
	})
	if goErr != nil {
		t.Fatal(goErr)
	}
	return script(t, p, []string{"SSL_CERT_FILE=" + p.CA}, goClient)
}}

func TestGoNetHTTP(t *testing.T) { t.Parallel(); runMatrix(t, goNetHTTP) }

func phpClient(lib, title string, na map[string]string) *client {
	return &client{name: "php-" + lib, title: title, na: na, run: func(t *testing.T, f *fixture, p plan) []result {
		php := interop.Tool(t, "php")
		if lib == "curl" {
			if out, err := exec.Command(php, "-r", "exit(function_exists('curl_init') ? 0 : 1);").CombinedOutput(); err != nil {
				if interop.Required() {
					t.Fatalf("PHP has no curl extension (%s=1): apt-get install -y php-curl (%s)", interop.EnvRequire, out)
				}
				t.Skip("PHP has no curl extension: apt-get install -y php-curl")
			}
		}
		return script(t, p, nil, php, "testdata/clients.php", lib)
	}}
}

var (
	phpCurl    = phpClient("curl", "PHP 8.2 curl extension", nil)
	phpStreams = phpClient("streams", "PHP 8.2 http:// streams (file_get_contents)", map[string]string{
		"*/chunked":   "the stream wrapper sends a body only from the context's content string, with Content-Length",
		"*/keepalive": "the stream wrapper sends `Connection: close` and opens a connection per request",
	})
)

func TestPHPCurl(t *testing.T)    { t.Parallel(); runMatrix(t, phpCurl) }
func TestPHPStreams(t *testing.T) { t.Parallel(); runMatrix(t, phpStreams) }

// Ruby Net::HTTP: http_proxy, even for https:// URLs; SSL_CERT_FILE.
var rubyNetHTTP = &client{name: "Net::HTTP", title: "Ruby 3.1 Net::HTTP", run: func(t *testing.T, f *fixture, p plan) []result {
	ruby := interop.Tool(t, "ruby")
	env := []string{"SSL_CERT_FILE=" + p.CA}
	if p.Proxy.HTTPS && !p.Proxy.HTTP {
		// Net::HTTP never reads https_proxy: a Ruby service gets HTTPS_PROXY's value as http_proxy.
		env = append(env, "http_proxy="+p.Proxy.URL)
	}
	return script(t, p, env, ruby, "testdata/clients.rb")
}}

func TestRubyNetHTTP(t *testing.T) { t.Parallel(); runMatrix(t, rubyNetHTTP) }
