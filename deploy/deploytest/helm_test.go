package deploytest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir   = "deploy/helm/payrails-mtls-proxy"
	exampleDir = "deploy/helm/examples/legacy-billing"
	namespace  = "payments"
)

// chart is a chart helm can render: the chart itself, or a copy of the
// example parent chart with this chart in its charts/ folder (what
// `helm dependency build` would put there).
type chart struct {
	helm string
	dir  string
}

func newChart(t *testing.T) chart {
	t.Helper()
	abs, err := filepath.Abs(repoPath(chartDir))
	if err != nil {
		t.Fatal(err)
	}
	return chart{requireHelm(t), abs}
}

func newExample(t *testing.T) chart {
	t.Helper()
	helm := requireHelm(t)
	dir := filepath.Join(t.TempDir(), "legacy-billing")
	copyTree(t, repoPath(exampleDir), dir)
	copyTree(t, repoPath(chartDir), filepath.Join(dir, "charts", "payrails-mtls-proxy"))
	return chart{helm, dir}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// valuesFile writes YAML to a temporary values file. Not in t.TempDir:
// helm splits --values at commas, which a subtest's name may hold.
func valuesFile(t *testing.T, yamlText string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "helm-values-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f, err := os.CreateTemp(dir, "values-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(yamlText); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

// run runs helm with args and returns its standard output, and its
// standard error as the error when it fails.
func (c chart) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return c.runIn(t, "", args...)
}

// runIn is run in the folder dir ("" means this package's).
func (c chart) runIn(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.helm, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), &helmError{args, err, errOut.String()}
	}
	return out.String(), nil
}

type helmError struct {
	args   []string
	err    error
	stderr string
}

func (e *helmError) Error() string {
	return "helm " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

// template renders the chart with the values files, as release "rel" in
// namespace payments.
func (c chart) template(t *testing.T, valueFiles ...string) (string, error) {
	t.Helper()
	args := []string{"template", "rel", c.dir, "--namespace", namespace}
	for _, f := range valueFiles {
		args = append(args, "--values", f)
	}
	return c.run(t, args...)
}

// manifests are the rendered objects, each decoded strictly into its
// Kubernetes API type.
type manifests struct {
	configMaps  []corev1.ConfigMap
	deployments []appsv1.Deployment
	services    []corev1.Service
	pdbs        []policyv1.PodDisruptionBudget
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	netpols     []networkingv1.NetworkPolicy
	count       int
}

// decode splits helm's output into documents and decodes each strictly: a
// field the API type does not have (a typo, a wrong indentation) fails, as
// does an object of a kind this test does not know.
func decode(t *testing.T, out string) manifests {
	t.Helper()
	var m manifests
	for _, doc := range strings.Split("\n"+out, "\n---\n") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("rendered document does not parse: %v\n%s", err, doc)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 ConfigMap":
			err = appendStrict(&m.configMaps, doc)
		case "apps/v1 Deployment":
			err = appendStrict(&m.deployments, doc)
		case "v1 Service":
			err = appendStrict(&m.services, doc)
		case "policy/v1 PodDisruptionBudget":
			err = appendStrict(&m.pdbs, doc)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			err = appendStrict(&m.hpas, doc)
		case "networking.k8s.io/v1 NetworkPolicy":
			err = appendStrict(&m.netpols, doc)
		default:
			t.Fatalf("rendered a %s %s, which this test does not decode; add its type\n%s", tm.APIVersion, tm.Kind, doc)
		}
		if err != nil {
			t.Fatalf("%s %s does not decode strictly into its API type: %v\n%s", tm.APIVersion, tm.Kind, err, doc)
		}
		m.count++
	}
	m.checkNames(t)
	return m
}

// appendStrict decodes doc strictly into a new element of list.
func appendStrict[T any](list *[]T, doc string) error {
	var v T
	err := strict([]byte(doc), &v)
	*list = append(*list, v)
	return err
}

// strict decodes a YAML object into an API type as the API server does
// with strict field validation: case-sensitive field names (Go's
// encoding/json would take "readonly" for readOnly), and no unknown or
// duplicate fields.
func strict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	problems, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(problems...)
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// checkNames applies the API server's rules for names and labels, which
// decoding alone does not.
func (m manifests) checkNames(t *testing.T) {
	t.Helper()
	var metas []metav1.ObjectMeta
	for _, o := range m.configMaps {
		metas = append(metas, o.ObjectMeta)
	}
	for _, o := range m.services {
		metas = append(metas, o.ObjectMeta)
	}
	for _, o := range m.pdbs {
		metas = append(metas, o.ObjectMeta)
	}
	for _, o := range m.hpas {
		metas = append(metas, o.ObjectMeta)
	}
	for _, o := range m.netpols {
		metas = append(metas, o.ObjectMeta)
	}
	for _, d := range m.deployments {
		metas = append(metas, d.ObjectMeta, d.Spec.Template.ObjectMeta)
		spec := d.Spec.Template.Spec
		for _, v := range spec.Volumes {
			for _, e := range validation.IsDNS1123Label(v.Name) {
				t.Errorf("deployment %s: volume name %q: %s", d.Name, v.Name, e)
			}
		}
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			for _, p := range c.Ports {
				for _, e := range validation.IsValidPortName(p.Name) {
					t.Errorf("deployment %s, container %s: port name %q: %s", d.Name, c.Name, p.Name, e)
				}
			}
		}
	}
	for _, meta := range metas {
		if meta.Name != "" {
			for _, e := range validation.IsDNS1123Subdomain(meta.Name) {
				t.Errorf("name %q: %s", meta.Name, e)
			}
		}
		for k, v := range meta.Labels {
			for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
				t.Errorf("%s: label %s=%s: %s", meta.Name, k, v, e)
			}
		}
	}
}

// TestHelmLint: helm lint --strict passes with the chart's default values
// (what `helm lint` of the chart, and any tool that lints it as it is, sees:
// issue 25), with every values file in the chart's ci/ folder, and for the
// example parent chart.
func TestHelmLint(t *testing.T) {
	c := newChart(t)
	if out, err := c.run(t, "lint", "--strict", c.dir); err != nil {
		t.Errorf("%s with its default values: %v\n%s", chartDir, err, out)
	}
	files, _ := filepath.Glob(filepath.Join(c.dir, "ci", "*-values.yaml"))
	if len(files) < 3 {
		t.Fatalf("found %d values files in %s/ci, want the gateway and sidecar examples", len(files), chartDir)
	}
	for _, f := range files {
		if out, err := c.run(t, "lint", "--strict", c.dir, "--values", f); err != nil {
			t.Errorf("%s with %s: %v\n%s", chartDir, filepath.Base(f), err, out)
		}
	}
	ex := newExample(t)
	if out, err := ex.run(t, "lint", "--strict", ex.dir); err != nil {
		t.Errorf("%s: %v\n%s", exampleDir, err, out)
	}
}
