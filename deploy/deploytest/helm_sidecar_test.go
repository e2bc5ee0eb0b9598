package deploytest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// kubernetesManifests decodes deploy/kubernetes/deployment.yaml and
// configmap.yaml strictly, as a manifests value.
func kubernetesManifests(t *testing.T) manifests {
	t.Helper()
	var m manifests
	m.deployments = []appsv1.Deployment{{}}
	m.configMaps = []corev1.ConfigMap{{}}
	for rel, obj := range map[string]any{
		"deploy/kubernetes/deployment.yaml": &m.deployments[0],
		"deploy/kubernetes/configmap.yaml":  &m.configMaps[0],
	} {
		if err := strict(readRepo(t, rel), obj); err != nil {
			t.Fatalf("%s does not decode strictly into its API type: %v", rel, err)
		}
	}
	return m
}

// TestHelmSidecarMatchesKubernetesManifests: the example parent chart,
// which includes payrails-mtls-proxy.sidecar and .volumes, renders the
// Deployment of deploy/kubernetes/deployment.yaml exactly (the same native
// sidecar container, the same volumes, the same pod), and the chart's
// ConfigMap loads into the same configuration as configmap.yaml's.
func TestHelmSidecarMatchesKubernetesManifests(t *testing.T) {
	ex := newExample(t)
	out, err := ex.template(t)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, out)
	want := kubernetesManifests(t)
	if len(got.deployments) != 1 || len(got.configMaps) != 1 || got.count != 2 {
		t.Fatalf("the example rendered %d objects (%d Deployments, %d ConfigMaps); want its Deployment and the proxy's ConfigMap",
			got.count, len(got.deployments), len(got.configMaps))
	}
	gd, wd := got.deployments[0], want.deployments[0]
	// The example also rolls its pods when the proxy's configuration
	// changes; the plain manifest cannot.
	if gd.Spec.Template.Annotations["checksum/payrails-mtls-proxy"] == "" {
		t.Error("the example's pod template has no checksum/payrails-mtls-proxy annotation")
	}
	delete(gd.Spec.Template.Annotations, "checksum/payrails-mtls-proxy")
	gs := container(t, gd.Spec.Template.Spec.InitContainers, "payrails-mtls-proxy")
	ws := container(t, wd.Spec.Template.Spec.InitContainers, "payrails-mtls-proxy")
	if d := jsonDiff(gs, ws); d != "" {
		t.Errorf("the chart's sidecar container differs from deploy/kubernetes/deployment.yaml's:\n%s", d)
	}
	if d := jsonDiff(gd.Spec.Template.Spec.Volumes, wd.Spec.Template.Spec.Volumes); d != "" {
		t.Errorf("the chart's volumes differ from deploy/kubernetes/deployment.yaml's:\n%s", d)
	}
	if d := jsonDiff(gd, wd); d != "" {
		t.Errorf("the example's Deployment differs from deploy/kubernetes/deployment.yaml:\n%s", d)
	}
	gotCfg := checkPod(t, got, gd.Spec.Template.Spec, gs)
	wantCfg := checkPod(t, want, wd.Spec.Template.Spec, ws)
	if !reflect.DeepEqual(gotCfg, wantCfg) {
		t.Errorf("the chart's config.yaml loads into\n%+v\nconfigmap.yaml's into\n%+v", gotCfg, wantCfg)
	}
	if gs.RestartPolicy == nil || *gs.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the sidecar is not a native sidecar (an init container with restartPolicy: Always)")
	}
}

// TestHelmSidecarMode: sidecar mode on its own renders only the ConfigMap,
// and its configuration keeps the proxy on loopback.
func TestHelmSidecarMode(t *testing.T) {
	c := newChart(t)
	out, err := c.template(t, c.dir+"/ci/sidecar-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, out)
	if m.count != 1 || len(m.configMaps) != 1 {
		t.Fatalf("sidecar mode rendered %d objects, want only the ConfigMap:\n%s", m.count, out)
	}
	cfg, err := config.Parse([]byte(m.configMaps[0].Data["config.yaml"]), "/etc/payrails-mtls-proxy/config.yaml",
		lookup(dockerfileEnv(t)), config.Overrides{}, false)
	if err != nil {
		t.Fatalf("the sidecar's config.yaml does not load with the image's environment:\n%v", err)
	}
	for _, p := range cfg.Access.AllowCIDRs {
		if !p.Addr().IsLoopback() {
			t.Errorf("sidecar access.allow_cidrs has %s; by default only the pod's own containers may use it", p)
		}
	}
}

// jsonDiff compares two values as the API server would store them (their
// JSON), and returns the lines that differ, or "".
func jsonDiff(got, want any) string {
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if string(g) == string(w) {
		return ""
	}
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	var b strings.Builder
	for i := 0; i < max(len(gl), len(wl)) && b.Len() < 4000; i++ {
		var a, c string
		if i < len(gl) {
			a = gl[i]
		}
		if i < len(wl) {
			c = wl[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n  chart:    %s\n  manifest: %s\n", i+1, a, c)
		}
	}
	return b.String()
}
