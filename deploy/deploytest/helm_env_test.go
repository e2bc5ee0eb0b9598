package deploytest

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// proxyEnvNames returns the PAYRAILS_PROXY_* variables that the binary
// reads in place of a configuration key: those of config/env.go's
// override tables and access.allow_cidrs, and serve's PAYRAILS_PROXY_CONFIG.
func proxyEnvNames(t *testing.T) []string {
	t.Helper()
	src := string(readRepo(t, "config/env.go"))
	var names []string
	for _, m := range regexp.MustCompile(`override\{"--[a-z-]+", "([A-Z_]+)"`).FindAllStringSubmatch(src, -1) {
		names = append(names, "PAYRAILS_PROXY_"+m[1])
	}
	for _, m := range regexp.MustCompile(`envPrefix \+ "([A-Z_]+)"`).FindAllStringSubmatch(src, -1) {
		names = append(names, "PAYRAILS_PROXY_"+m[1])
	}
	if !strings.Contains(string(readRepo(t, "cmd/payrails-mtls-proxy/serve.go")), `os.Getenv("PAYRAILS_PROXY_CONFIG")`) {
		t.Error("cmd/payrails-mtls-proxy/serve.go no longer reads PAYRAILS_PROXY_CONFIG; update this test")
	}
	names = append(names, "PAYRAILS_PROXY_CONFIG")
	slices.Sort(names)
	names = slices.Compact(names)
	for _, want := range []string{"PAYRAILS_PROXY_LISTEN", "PAYRAILS_PROXY_ADMIN_LISTEN", "PAYRAILS_PROXY_ALLOW_CIDRS", "PAYRAILS_PROXY_CERT_DIR"} {
		if !slices.Contains(names, want) {
			t.Fatalf("found %v in config/env.go, not %s: the patterns of this test no longer match it", names, want)
		}
	}
	return names
}

// TestHelmExtraEnvOverridesNothing: an extraEnv entry for any variable the
// binary reads in place of a configuration key, or for one the chart sets
// itself, fails the render naming it (Kubernetes takes the last entry of a
// name, and the environment beats the file, so it would bypass the chart's
// checks); other variables render, after the chart's own.
func TestHelmExtraEnvOverridesNothing(t *testing.T) {
	c := newChart(t)
	for _, name := range append(proxyEnvNames(t), "GOMEMLIMIT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_TRACES_SAMPLER_ARG") {
		t.Run(name, func(t *testing.T) {
			out, err := c.template(t, gatewayValues(t, "extraEnv: [{name: "+name+", value: x}]")...)
			if err == nil {
				t.Fatalf("rendered with extraEnv %s, want a failure naming it:\n%s", name, out)
			}
			if want := "extraEnv[0] is " + name; !strings.Contains(err.Error(), want) {
				t.Errorf("failed with\n%v\nwant a message containing %q", err, want)
			}
		})
	}
	t.Run("allowed", func(t *testing.T) {
		out, err := c.template(t, gatewayValues(t, `extraEnv:
  - {name: PAYRAILS_PROXY_KEY_PASSPHRASE, valueFrom: {secretKeyRef: {name: key-passphrase, key: passphrase}}}
  - {name: TZ, value: UTC}`)...)
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, out)
		env := container(t, m.deployments[0].Spec.Template.Spec.Containers, "payrails-mtls-proxy").Env
		i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "PAYRAILS_PROXY_KEY_PASSPHRASE" })
		if i < 0 || env[i].ValueFrom == nil || env[i].ValueFrom.SecretKeyRef == nil || env[len(env)-1].Name != "TZ" {
			t.Errorf("the container's env %+v; want the chart's, then PAYRAILS_PROXY_KEY_PASSPHRASE from its Secret and TZ", env)
		}
	})
}
