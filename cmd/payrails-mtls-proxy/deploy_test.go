package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/yamlkeys"
	"go.yaml.in/yaml/v3"
)

// The deployment files live at the top of the repository; these tests keep
// them honest against the binary they deploy: everything parses, the example
// configuration loads, and every flag, PAYRAILS_PROXY_* variable and port
// they name exists.

const deployRoot = "../.."

// deployFile is one file that deploys the binary, relative to deployRoot.
type deployFile struct {
	rel  string
	data []byte
}

// deployTests is the folder of the Go tests that prove deploy/ with helm,
// promtool and the Kubernetes types: test code, not a deployment file.
const deployTests = "deploy/deploytest"

// deployFiles returns the Dockerfile and every file under deploy/ but the
// Go tests in deployTests.
func deployFiles(t *testing.T) []deployFile {
	t.Helper()
	var out []deployFile
	err := filepath.WalkDir(filepath.Join(deployRoot, "deploy"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == filepath.Join(deployRoot, filepath.FromSlash(deployTests)) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(deployRoot, p)
		data, err := os.ReadFile(p)
		out = append(out, deployFile{filepath.ToSlash(rel), data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, deployFile{"Dockerfile", deployRead(t, "Dockerfile")})
}

func deployRead(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func deployIsYAML(rel string) bool {
	return strings.HasSuffix(rel, ".yaml") || strings.HasSuffix(rel, ".yml")
}

// deployYAMLDocs decodes every document of a (multi-document) YAML file.
func deployYAMLDocs(data []byte) ([]any, error) {
	var docs []any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, doc)
	}
}

func TestDeployYAMLParses(t *testing.T) {
	n := 0
	for _, f := range deployFiles(t) {
		if !deployIsYAML(f.rel) || deployIsHelmTemplate(f.rel) {
			continue
		}
		n++
		docs, err := deployYAMLDocs(f.data)
		if err != nil {
			t.Errorf("%s: %v", f.rel, err)
			continue
		}
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", f.rel)
		}
		if !strings.HasPrefix(f.rel, "deploy/kubernetes/") {
			continue
		}
		for i, d := range docs {
			m, _ := d.(map[string]any)
			if m["apiVersion"] == nil || m["kind"] == nil {
				t.Errorf("%s: document %d has no apiVersion or kind", f.rel, i+1)
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d YAML files under deploy/, want the compose file, three Kubernetes manifests and the example configuration", n)
	}
}

// deployIsHelmTemplate reports whether rel is a Helm chart's template: Go
// template text that is YAML only once rendered (deploy/deploytest renders
// the charts and decodes what helm makes of them).
func deployIsHelmTemplate(rel string) bool {
	return strings.HasPrefix(rel, "deploy/helm/") && strings.Contains(rel, "/templates/")
}

// deployParse loads a configuration as `serve` would, without checking that
// the files it names exist on this machine, and with the given environment.
func deployParse(t *testing.T, data []byte, name string, env map[string]string) (*config.Config, error) {
	t.Helper()
	return config.Parse(data, name, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, config.Overrides{}, false)
}

func TestDeployExampleConfig(t *testing.T) {
	const rel = "deploy/config.example.yaml"
	data := deployRead(t, rel)
	cfg, err := deployParse(t, data, "/etc/payrails-mtls-proxy/config.yaml", nil)
	if err != nil {
		t.Fatalf("%s does not load:\n%v", rel, err)
	}
	// Every setting shows its default.
	def, err := deployParse(t, []byte("upstreams: [{url: https://api.acme.payrails.io, cert_dir: /certs}]"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"listen", cfg.Listen, def.Listen},
		{"admin_listen", cfg.AdminListen, def.AdminListen},
		{"log", cfg.Log, def.Log},
		{"access", cfg.Access, def.Access},
		{"reload", cfg.Reload, def.Reload},
		{"timeouts", cfg.Timeouts, def.Timeouts},
		{"connect", cfg.Connect, def.Connect},
		{"mitm", cfg.MITM, def.MITM},
		{"tracing", cfg.Tracing, def.Tracing},
		{"upstreams[0].address", cfg.Upstreams[0].Address, def.Upstreams[0].Address},
		{"upstreams[0].key_passphrase_file", cfg.Upstreams[0].KeyPassphraseFile, ""},
		{"upstreams[0].ca_file", cfg.Upstreams[0].CAFile, ""},
		{"upstreams[0].token", cfg.Upstreams[0].Token, config.Token{}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: %s is %v, want the default %v", rel, c.key, c.got, c.want)
		}
	}
	// Every key of the file format (DESIGN.md) is written out.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	yamlkeys.Collect(&root, "", got)
	for _, k := range []string{
		"listen", "admin_listen", "log.level", "log.format", "access.allow_cidrs", "access.proxy_auth_file",
		"upstreams[].name", "upstreams[].url", "upstreams[].address", "upstreams[].default", "upstreams[].cert_dir",
		"upstreams[].cert_file", "upstreams[].key_file", "upstreams[].key_passphrase_file", "upstreams[].ca_file",
		"upstreams[].token.client_id", "upstreams[].token.client_secret_file",
		"reload.debounce", "reload.poll_interval", "timeouts.dial", "timeouts.tls_handshake",
		"timeouts.response_header", "timeouts.idle_conn", "timeouts.shutdown", "connect",
		"mitm.ca_cert_file", "mitm.ca_key_file", "tracing.otlp_endpoint", "tracing.sample_ratio",
	} {
		if !got[k] {
			t.Errorf("%s does not show the key %s", rel, k)
		}
	}
	// What the file tells container users to do works: with the image's
	// environment and PAYRAILS_PROXY_CERT_DIR emptied, the two-upstream file loads.
	env := deployDockerfileEnv(t)
	env["PAYRAILS_PROXY_CERT_DIR"] = ""
	if _, err := deployParse(t, data, "/etc/payrails-mtls-proxy/config.yaml", env); err != nil {
		t.Errorf("%s with the image's environment and PAYRAILS_PROXY_CERT_DIR=\"\":\n%v", rel, err)
	}
}

// TestDeployPorts: the ports in the deploy files are the default proxy and
// admin ports, in their roles: proxy URLs on the proxy port, probes on the
// admin port.
func TestDeployPorts(t *testing.T) {
	proxyPort, adminPort := deployPort(t, config.DefaultListen), deployPort(t, config.DefaultAdminListen)
	allowed := map[int]bool{proxyPort: true, adminPort: true}
	for _, f := range deployFiles(t) {
		n := 0
		for line := range strings.Lines(string(f.data)) {
			n++
			var ports []string
			for _, m := range deployAddrPort.FindAllStringSubmatch(line, -1) {
				ports = append(ports, m[1], m[2])
			}
			for _, m := range deployKeyPort.FindAllStringSubmatch(line, -1) {
				ports = append(ports, m[1])
			}
			for _, m := range deployExpose.FindAllStringSubmatch(line, -1) {
				ports = append(ports, strings.Fields(m[1])...)
			}
			for _, p := range ports {
				if p == "" {
					continue
				}
				if port, err := strconv.Atoi(p); err != nil || !allowed[port] {
					t.Errorf("%s:%d: port %s is neither the proxy port %d nor the admin port %d", f.rel, n, p, proxyPort, adminPort)
				}
			}
			for _, raw := range deployURLs.FindAllString(line, -1) {
				u, err := url.Parse(raw)
				if err != nil || u.Port() == "" {
					continue
				}
				want := proxyPort
				if strings.HasSuffix(u.Path, "/readyz") || strings.HasSuffix(u.Path, "/healthz") || u.Path == "/metrics" {
					want = adminPort
				}
				if u.Port() != strconv.Itoa(want) {
					t.Errorf("%s:%d: %s: want port %d", f.rel, n, raw, want)
				}
			}
		}
	}
	roles := map[string]int{"PAYRAILS_PROXY_LISTEN": proxyPort, "PAYRAILS_PROXY_ADMIN_LISTEN": adminPort}
	for _, env := range []map[string]string{deployDockerfileEnv(t), deploySidecar(t).envMap()} {
		for k, want := range roles {
			if got := deployPort(t, env[k]); got != want {
				t.Errorf("%s=%s: want port %d", k, env[k], want)
			}
		}
	}
}
