package clientmatrix

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

var (
	javaOnce    sync.Once
	javaClasses string // where Clients.class is
	javaStore   string // the local CA as a PKCS#12 trust store
	javaErr     error
)

// javaSetup compiles Clients.java and makes the trust store, once.
func javaSetup(t *testing.T, f *fixture) (string, string) {
	javac, keytool := interop.Tool(t, "javac"), interop.Tool(t, "keytool")
	javaOnce.Do(func() {
		javaClasses = filepath.Join(f.dir, "java")
		if out, err := exec.Command(javac, "-d", javaClasses, "testdata/Clients.java").CombinedOutput(); err != nil {
			javaErr = &cmdError{"javac", err, out}
			return
		}
		javaStore = filepath.Join(f.dir, "truststore.p12")
		if out, err := exec.Command(keytool, "-importcert", "-noprompt", "-keystore", javaStore, "-storetype", "PKCS12",
			"-storepass", "changeit", "-alias", "payrails-mtls-proxy", "-file", f.mitmCA).CombinedOutput(); err != nil {
			javaErr = &cmdError{"keytool", err, out}
		}
	})
	if javaErr != nil {
		t.Fatal(javaErr)
	}
	return javaClasses, javaStore
}

type cmdError struct {
	name string
	err  error
	out  []byte
}

func (e *cmdError) Error() string { return e.name + ": " + e.err.Error() + "\n" + string(e.out) }

func javaClient(lib, title string, na map[string]string) *client {
	return &client{name: lib, title: title, na: na, run: func(t *testing.T, f *fixture, p plan) []result {
		java := interop.Tool(t, "java")
		classes, store := javaSetup(t, f)
		port := strconv.Itoa(p.Proxy.Port)
		// The way Java services are pointed at a proxy: system properties.
		args := []string{"-Djavax.net.ssl.trustStore=" + store, "-Djavax.net.ssl.trustStorePassword=changeit",
			"-Djavax.net.ssl.trustStoreType=PKCS12"}
		if p.Proxy.HTTP {
			args = append(args, "-Dhttp.proxyHost="+p.Proxy.Host, "-Dhttp.proxyPort="+port)
		}
		if p.Proxy.HTTPS {
			args = append(args, "-Dhttps.proxyHost="+p.Proxy.Host, "-Dhttps.proxyPort="+port)
		}
		if p.Proxy.User != "" {
			// Basic proxy credentials through a CONNECT tunnel are disabled by default since Java 8u111.
			args = append(args, "-Djdk.http.auth.tunneling.disabledSchemes=")
		}
		args = append(args, "-cp", classes, "Clients", lib)
		return script(t, p, nil, java, args...)
	}}
}

var (
	javaHTTPClient = javaClient("HttpClient", "Java 17 java.net.http.HttpClient", nil)
	javaURLConn    = javaClient("HttpURLConnection", "Java 17 HttpURLConnection", nil)
)

func TestJavaHTTPClient(t *testing.T)        { t.Parallel(); runMatrix(t, javaHTTPClient) }
func TestJavaHttpURLConnection(t *testing.T) { t.Parallel(); runMatrix(t, javaURLConn) }
