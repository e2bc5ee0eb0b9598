package deploytest

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// TestPodSecurityRestricted: every pod the deployment files make passes the
// restricted Pod Security Standard, with the API server's own checks
// (k8s.io/pod-security-admission), so that each runs in a namespace that
// enforces it: deploy/kubernetes/deployment.yaml (its example application
// container too: issue 25 found it Forbidden), the example parent chart,
// and the gateway with each values file. .ci/run proves the same on a real
// control plane (deploy/deploytest/clustertest).
func TestPodSecurityRestricted(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	check := func(t *testing.T, what string, meta metav1.ObjectMeta, spec corev1.PodSpec) {
		t.Helper()
		for _, r := range eval.EvaluatePod(restricted, &meta, &spec) {
			if !r.Allowed {
				t.Errorf("%s: Forbidden under PodSecurity restricted: %s (%s)", what, r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
	}
	d := kubernetesManifests(t).deployments[0]
	check(t, "deploy/kubernetes/deployment.yaml", d.Spec.Template.ObjectMeta, d.Spec.Template.Spec)

	ex := newExample(t)
	out, err := ex.template(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range decode(t, out).deployments {
		check(t, exampleDir, d.Spec.Template.ObjectMeta, d.Spec.Template.Spec)
	}
	c := newChart(t)
	for _, f := range []string{"gateway-values.yaml", "gateway-autoscaling-values.yaml"} {
		out, err := c.template(t, filepath.Join(c.dir, "ci", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range decode(t, out).deployments {
			check(t, chartDir+" with ci/"+f, d.Spec.Template.ObjectMeta, d.Spec.Template.Spec)
		}
	}
}
