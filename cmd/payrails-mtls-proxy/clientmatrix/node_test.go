package clientmatrix

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// EnvNPMDir names the folder whose node_modules holds the pinned npm
// packages (undici, axios1, axios0): .ci/run installs them there with
// .ci/clients-npm.sh, outside the clone.
const EnvNPMDir = "PAYRAILS_PROXY_NPM_DIR"

const defaultNPMDir = "/var/cache/payrails-mtls-proxy-ci/npm"

// nodeModules returns the node_modules folder holding the pinned packages.
func nodeModules(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(EnvNPMDir)
	if dir == "" {
		dir = defaultNPMDir
	}
	mods := filepath.Join(dir, "node_modules")
	for _, pkg := range []string{"undici", "axios1", "axios0"} {
		if _, err := os.Stat(filepath.Join(mods, pkg, "package.json")); err != nil {
			msg := "the pinned npm packages are not installed in " + dir + ": run bash .ci/clients-npm.sh " + dir +
				" (or set " + EnvNPMDir + " to where it installed them)"
			if interop.Required() {
				t.Fatal(msg)
			}
			t.Skip(msg + "; set " + interop.EnvRequire + "=1 to make this a failure")
		}
	}
	return mods
}

func nodeClient(lib, title string, na map[string]string) *client {
	return &client{name: lib, title: title, na: na, run: func(t *testing.T, f *fixture, p plan) []result {
		node := interop.Tool(t, "node")
		env := []string{"NODE_PATH=" + nodeModules(t), "NODE_EXTRA_CA_CERTS=" + p.CA}
		return script(t, p, env, node, "testdata/clients.js", lib)
	}}
}

var (
	nodeHTTPClient = nodeClient("node:http", "Node.js 20 node:http", nil)
	fetchClient    = nodeClient("fetch", "Node.js 20 fetch, undici's EnvHttpProxyAgent as dispatcher", nil)
	undiciClient   = nodeClient("undici", "undici 7 request, EnvHttpProxyAgent", nil)
	axios1Client   = nodeClient("axios-1", "axios 1", map[string]string{
		"mitm/keepalive": "axios 1 opens a new CONNECT tunnel for every https:// request through a proxy",
	})
	axios0Client = nodeClient("axios-0.27", "axios 0.27", nil)
)

func TestNodeHTTP(t *testing.T)   { t.Parallel(); runMatrix(t, nodeHTTPClient) }
func TestNodeFetch(t *testing.T)  { t.Parallel(); runMatrix(t, fetchClient) }
func TestNodeUndici(t *testing.T) { t.Parallel(); runMatrix(t, undiciClient) }
func TestNodeAxios1(t *testing.T) { t.Parallel(); runMatrix(t, axios1Client) }
func TestNodeAxios0(t *testing.T) { t.Parallel(); runMatrix(t, axios0Client) }
