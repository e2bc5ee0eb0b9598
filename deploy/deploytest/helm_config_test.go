package deploytest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/yamlkeys"
	"go.yaml.in/yaml/v3"
)

// renderConfig renders gateway mode with the values files and returns the
// configuration its proxy container will run with (see checkPod).
func renderConfig(t *testing.T, c chart, valueFiles ...string) *config.Config {
	t.Helper()
	out, err := c.template(t, valueFiles...)
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if len(m.deployments) != 1 {
		t.Fatalf("rendered %d Deployments, want 1", len(m.deployments))
	}
	spec := m.deployments[0].Spec.Template.Spec
	return checkPod(t, m, spec, container(t, spec.Containers, "payrails-mtls-proxy"))
}

// TestHelmEveryKey: values that set every configuration key to something
// other than its default render a config.yaml that loads into exactly what
// the hand-written equivalent (testdata/full-config.yaml) loads into. So
// every key is reachable from the values and reaches the proxy.
func TestHelmEveryKey(t *testing.T) {
	c := newChart(t)
	got := renderConfig(t, c, "testdata/full-values.yaml")
	const name = "/etc/payrails-mtls-proxy/config.yaml"
	full := readRepo(t, "deploy/deploytest/testdata/full-config.yaml")
	want, err := config.Parse(full, name, nil, config.Overrides{}, false)
	if err != nil {
		t.Fatalf("testdata/full-config.yaml: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("full-values.yaml renders a configuration that loads into\n%+v\nfull-config.yaml into\n%+v", got, want)
	}

	// full-config.yaml writes every key of the file format (those of
	// config.example.yaml, which the cmd tests hold to DESIGN.md) but the
	// ones the chart sets another way, each to a value that is not its default.
	var root yaml.Node
	if err := yaml.Unmarshal(full, &root); err != nil {
		t.Fatal(err)
	}
	have, all := map[string]bool{}, map[string]bool{}
	yamlkeys.Collect(&root, "", have)
	var example yaml.Node
	if err := yaml.Unmarshal(readRepo(t, "deploy/config.example.yaml"), &example); err != nil {
		t.Fatal(err)
	}
	yamlkeys.Collect(&example, "", all)
	notFromValues := map[string]string{
		"upstreams[].cert_file": "a Secret is mounted as a folder (cert_dir), which sees rotations",
		"upstreams[].key_file":  "a Secret is mounted as a folder (cert_dir), which sees rotations",
	}
	for k := range all {
		if !have[k] && notFromValues[k] == "" {
			t.Errorf("testdata/full-config.yaml does not set %s (a key of deploy/config.example.yaml); add it there and to full-values.yaml", k)
		}
	}
	def, err := config.Parse([]byte(`upstreams: [{name: a, url: "https://a.example", cert_dir: /a}, {name: b, url: "https://b.example", cert_dir: /b}]`),
		name, nil, config.Overrides{}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sameAsDefault(reflect.ValueOf(*want), reflect.ValueOf(*def), "") {
		t.Errorf("testdata/full-config.yaml leaves %s at its default; set another value, so that this test sees the chart pass it on", p)
	}
}

// sameAsDefault lists the leaf fields of a Config (the first upstream for
// Upstreams) whose value equals the default's. Fields that come from the
// environment only, or are derived, are left out.
func sameAsDefault(got, def reflect.Value, path string) []string {
	// KeyURI is set on the second upstream (a key passphrase and a token key
	// do not go together); the PKCS#11 PIN comes from a file or the environment.
	skip := map[string]bool{".Source": true, ".Upstreams.Host": true, ".Upstreams.KeyPassphrase": true, ".Upstreams.KeyPassphraseEnv": true,
		".Upstreams.KeyURI": true, ".Upstreams.PKCS11PIN": true, ".Upstreams.PKCS11PINEnv": true,
		".Upstreams.CertFile": true, ".Upstreams.KeyFile": true, ".Upstreams.Token.ClientSecret": true, ".Upstreams.Token.ClientSecretEnv": true,
		// From OTEL_* variables only, not keys of the file.
		".Tracing.Sampler": true, ".Tracing.ServiceName": true, ".Tracing.Resource": true, ".Tracing.Headers": true,
		".Tracing.Gzip": true, ".Tracing.CAFile": true, ".Tracing.CertFile": true, ".Tracing.KeyFile": true}
	if skip[path] {
		return nil
	}
	switch got.Kind() {
	case reflect.Struct:
		if got.Type().NumField() > 0 && got.Type().Field(0).IsExported() {
			var out []string
			for i := range got.NumField() {
				out = append(out, sameAsDefault(got.Field(i), def.Field(i), path+"."+got.Type().Field(i).Name)...)
			}
			return out
		}
	case reflect.Slice:
		if got.Type().Elem().Kind() == reflect.Struct && got.Len() > 0 && def.Len() > 0 {
			return sameAsDefault(got.Index(0), def.Index(0), path)
		}
	}
	if reflect.DeepEqual(got.Interface(), def.Interface()) {
		return []string{strings.TrimPrefix(path, ".")}
	}
	return nil
}

// TestHelmDefaults: with only what is required, the chart's configuration
// is the binary's defaults: the same Config as a file with nothing but the
// required keys, given the environment the chart sets.
func TestHelmDefaults(t *testing.T) {
	c := newChart(t)
	got := renderConfig(t, c, c.dir+"/ci/gateway-values.yaml")
	env := dockerfileEnv(t)
	env["PAYRAILS_PROXY_LISTEN"] = "0.0.0.0:8080"
	minimal := `access: {allow_cidrs: [10.0.0.0/8], proxy_auth_file: /etc/payrails-mtls-proxy-secrets/proxy-auth/auth}
upstreams: [{name: live, url: "https://api.acme.payrails.io"}]`
	want, err := config.Parse([]byte(minimal), "/etc/payrails-mtls-proxy/config.yaml", lookup(env), config.Overrides{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with default values the chart's configuration loads into\n%+v\nthe binary's defaults are\n%+v", got, want)
	}
}

// gatewayValues returns two values files: a valid gateway, then the
// override given, which helm merges over it (maps key by key, lists whole).
func gatewayValues(t *testing.T, override string) []string {
	t.Helper()
	return []string{valuesFile(t, `mode: gateway
image: {repository: registry.example.com/payrails-mtls-proxy}
access: {allowCidrs: [10.0.0.0/8], proxyAuthSecret: proxy-auth}
upstreams: [{name: live, url: "https://api.acme.payrails.io", certificateSecret: live-cert}]
`), valuesFile(t, override)}
}

// TestHelmRefuses: values that would make an open proxy, a via that is not
// http://HOST:PORT, a file that no Secret provides, or a pod that cannot
// work, fail the render with a message that names the value.
func TestHelmRefuses(t *testing.T) {
	c := newChart(t)
	for _, tc := range []struct {
		name, values, want string
		alone              bool // values is the whole file, not an override of a valid gateway
	}{
		{"open proxy: no allowCidrs", "access: {allowCidrs: []}", "access.allowCidrs is required", false},
		{"open proxy: no proxyAuthSecret", "access: {proxyAuthSecret: \"\"}", "access.proxyAuthSecret is required", false},
		{"open proxy: gateway defaults", "image: {repository: r}\nupstreams: [{name: live, url: \"https://a.example\", certificateSecret: s}]",
			"the chart refuses to render an open proxy", true},
		{"open proxy: sidecar on all interfaces", "mode: sidecar\nlisten: 0.0.0.0:8080\nimage: {repository: r}\nupstreams: [{name: live, url: \"https://a.example\", certificateSecret: s}]",
			"access.allowCidrs is required", true},
		{"open proxy: sidecar listen and allowCidrs in extraEnv",
			"mode: sidecar\nimage: {repository: r}\nupstreams: [{name: live, url: \"https://a.example\", certificateSecret: s}]\n" +
				`extraEnv: [{name: PAYRAILS_PROXY_LISTEN, value: "0.0.0.0:8080"}, {name: PAYRAILS_PROXY_ALLOW_CIDRS, value: 0.0.0.0/0}]`,
			"extraEnv[0] is PAYRAILS_PROXY_LISTEN, which the proxy reads in place of the chart's listen", true},
		{"open proxy: allowCidrs in extraEnv", `extraEnv: [{name: TZ, value: UTC}, {name: PAYRAILS_PROXY_ALLOW_CIDRS, value: 0.0.0.0/0}]`,
			"extraEnv[1] is PAYRAILS_PROXY_ALLOW_CIDRS, which the proxy reads in place of the chart's access.allowCidrs (", false},
		{"admin port in extraEnv", `extraEnv: [{name: PAYRAILS_PROXY_ADMIN_LISTEN, value: "0.0.0.0:9999"}]`,
			"set adminListen instead", false},
		{"another configuration file in extraEnv", `extraEnv: [{name: PAYRAILS_PROXY_CONFIG, value: /tmp/open.yaml}]`,
			"extraEnv[0] is PAYRAILS_PROXY_CONFIG; the chart writes the configuration file", false},
		{"via https", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, via: "https://squid.corp:3128"}]`,
			`upstreams[0].via is "https://squid.corp:3128"; write the egress proxy as http://HOST:PORT`, false},
		{"via with a password", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, via: "http://u:p@squid.corp:3128"}]`,
			"upstreams[0].via is", false},
		{"via without a port", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, via: "http://squid.corp"}]`,
			"upstreams[0].via is", false},
		{"viaAuthSecret without via", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, viaAuthSecret: squid-auth}]`,
			"upstreams[0].viaAuthSecret is set but upstreams[0].via is empty", false},
		{"via_auth_file is a file and not a value", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, via: "http://squid.corp:3128", via_auth_file: /x}]`,
			"'via_auth_file' not allowed", false},
		{"viaAuthFile is not a value either", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, viaAuthFile: /x}]`,
			"'viaAuthFile' not allowed", false},
		{"no upstreams", "upstreams: []", "upstreams is empty", false},
		{"no certificate Secret", `upstreams: [{name: live, url: "https://a.example"}]`, "upstreams[0].certificateSecret is empty", false},
		{"http upstream", `upstreams: [{name: live, url: "http://a.example", certificateSecret: s}]`, `upstreams[0].url is "http://a.example"`, false},
		{"no name", `upstreams: [{url: "https://a.example", certificateSecret: s}]`, "upstreams[0].name is", false},
		{"same name twice", `upstreams: [{name: a, url: "https://a.example", certificateSecret: s}, {name: a, url: "https://b.example", certificateSecret: t}]`,
			`upstreams[1].name "a" is used twice`, false},
		{"token without its secret", `upstreams: [{name: live, url: "https://a.example", certificateSecret: s, token: {clientId: acme}}]`,
			"upstreams[0].token.clientId is set but upstreams[0].token.clientSecretSecret is empty", false},
		{"mitm without its CA", "connect: mitm", "connect is mitm but mitm.caSecret is empty", false},
		{"one replica", "gateway: {replicas: 1}", "gateway.replicas is 1", false},
		{"autoscaling from one", "gateway: {autoscaling: {enabled: true, minReplicas: 1}}", "gateway.autoscaling.minReplicas is 1", false},
		{"unknown mode", "mode: daemonset", "/mode", false},
		{"misspelt key", "access: {allowCIDRs: [10.0.0.0/8]}", "'allowCIDRs' not allowed", false},
		{"no image", "image: {repository: \"\"}", "image.repository is empty", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := gatewayValues(t, tc.values)
			if tc.alone {
				files = []string{valuesFile(t, tc.values)}
			}
			out, err := c.template(t, files...)
			if err == nil {
				t.Fatalf("rendered, want a failure naming %q:\n%s", tc.want, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("failed with\n%v\nwant a message containing %q", err, tc.want)
			}
		})
	}
}

// TestHelmSidecarNeedsSidecarMode: a parent chart that includes the
// sidecar of a dependency left in gateway mode is told so.
func TestHelmSidecarNeedsSidecarMode(t *testing.T) {
	ex := newExample(t)
	_, err := ex.template(t, valuesFile(t, "payrails-mtls-proxy:\n  mode: gateway\n  access: {allowCidrs: [10.0.0.0/8], proxyAuthSecret: a}\n"))
	if err == nil || !strings.Contains(err.Error(), "set mode: sidecar") {
		t.Errorf("the example with its dependency in gateway mode: %v; want a failure saying to set mode: sidecar", err)
	}
}

// TestHelmVia: the chart accepts exactly the egress proxy addresses the
// binary accepts, so a value refused at render would be refused at start,
// and one accepted at render loads.
func TestHelmVia(t *testing.T) {
	c := newChart(t)
	for _, tc := range []struct {
		via string
		ok  bool
	}{
		{"http://squid.corp:3128", true},
		{"http://10.1.2.3:3128", true},
		{"http://[fd00::1]:3128", true},
		{"http://squid.corp:3128/", true},
		{"HTTP://squid.corp:3128", true},
		{"https://squid.corp:3128", false},
		{"http://squid.corp", false},
		{"http://user:pw@squid.corp:3128", false},
		{"http://squid.corp:3128/path", false},
		{"http://squid.corp:3128?x=1", false},
		{"http://squid.corp:0", false},
		{"http://squid.corp:70000", false},
		{"squid.corp:3128", false},
	} {
		t.Run(tc.via, func(t *testing.T) {
			_, binErr := config.Parse([]byte(fmt.Sprintf("upstreams: [{url: \"https://a.example\", cert_dir: /c, via: %q}]", tc.via)),
				"c.yaml", nil, config.Overrides{}, false)
			if (binErr == nil) != tc.ok {
				t.Fatalf("the binary: %v; want ok=%v (the table is wrong)", binErr, tc.ok)
			}
			values := gatewayValues(t, fmt.Sprintf("upstreams: [{name: live, url: \"https://a.example\", certificateSecret: s, via: %q}]", tc.via))
			if !tc.ok {
				if _, err := c.template(t, values...); err == nil || !strings.Contains(err.Error(), "upstreams[0].via is") {
					t.Errorf("the chart: %v; want a failure naming upstreams[0].via, as the binary refuses it:\n%v", err, binErr)
				}
				return
			}
			if got := renderConfig(t, c, values...); got.Upstreams[0].Via == nil {
				t.Errorf("via %s rendered, but the loaded configuration has no via", tc.via)
			}
		})
	}
}
