package clustertest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"github.com/mtlsproxy/payrails-mtls-proxy/deploy/deploytest/internal/repo"
)

const (
	namespace       = "payments"
	dryRunNamespace = "dry-run"
	chartDir        = "deploy/helm/payrails-mtls-proxy"
	example         = "deploy/helm/examples/legacy-billing"
)

// TestChartOnControlPlane installs the chart on a real control plane, in a
// namespace that enforces the restricted Pod Security Standard (issue 25):
// each values file of its ci/ folder, ready; an upgrade with a changed value
// rolls out a new ReplicaSet; a rollback returns to the first; a node is
// drained while the PodDisruptionBudget keeps a replica Ready; and every
// rendered example and every file in deploy/kubernetes/ is accepted by
// kubectl apply --dry-run=server --validate=strict, deployment.yaml's pods
// admitted for real.
func TestChartOnControlPlane(t *testing.T) {
	c := startCluster(t)
	c.apply(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
    pod-security.kubernetes.io/warn: restricted
`, namespace))
	c.createSecrets(t)
	root := repo.Root(t)

	files, _ := filepath.Glob(filepath.Join(root, chartDir, "ci", "*-values.yaml"))
	if len(files) < 3 {
		t.Fatalf("found %d values files in %s/ci", len(files), chartDir)
	}
	for _, f := range files {
		release := strings.TrimSuffix(filepath.Base(f), "-values.yaml")
		t.Run("install "+filepath.Base(f), func(t *testing.T) {
			c.helm("install", release, filepath.Join(root, chartDir), "--namespace", namespace, "--values", f,
				"--wait", "--timeout", "3m")
			for _, d := range c.deployments(release) {
				c.kubectl("rollout", "status", "deployment/"+d, "-n", namespace, "--timeout=2m")
			}
		})
	}

	gateway := "gateway" // the release of ci/gateway-values.yaml: 2 replicas and a PDB
	deploy := c.deployments(gateway)
	if len(deploy) != 1 {
		t.Fatalf("release %s has deployments %q, want one", gateway, deploy)
	}
	t.Run("upgrade rolls out a new ReplicaSet, rollback returns", func(t *testing.T) {
		first := c.activeReplicaSet(deploy[0])
		start := time.Now()
		c.helm("upgrade", gateway, filepath.Join(root, chartDir), "--namespace", namespace,
			"--values", filepath.Join(root, chartDir, "ci", "gateway-values.yaml"), "--set", "log.level=debug",
			"--wait", "--timeout", "3m")
		c.kubectl("rollout", "status", "deployment/"+deploy[0], "-n", namespace, "--timeout=2m")
		c.logSlow(t, "the upgrade", start)
		second := c.activeReplicaSet(deploy[0])
		if second == first {
			t.Fatalf("after helm upgrade --set log.level=debug the active ReplicaSet is still %s; a changed configuration must roll the pods", first)
		}
		start = time.Now()
		c.helm("rollback", gateway, "1", "--namespace", namespace, "--wait", "--timeout", "3m")
		c.kubectl("rollout", "status", "deployment/"+deploy[0], "-n", namespace, "--timeout=2m")
		c.logSlow(t, "the rollback", start)
		if back := c.activeReplicaSet(deploy[0]); back != first {
			t.Errorf("after helm rollback the active ReplicaSet is %s, want the first one, %s", back, first)
		}
	})
	t.Run("drain keeps a replica Ready", func(t *testing.T) { c.drain(t, gateway, deploy[0]) })
	t.Run("examples and deploy/kubernetes accepted", func(t *testing.T) { c.dryRunAll(t, root) })
	t.Run("deploy/kubernetes/deployment.yaml admitted", func(t *testing.T) {
		start := time.Now()
		for _, f := range []string{"configmap.yaml", "deployment.yaml", "networkpolicy.yaml"} {
			c.kubectl("apply", "-n", namespace, "-f", filepath.Join(root, "deploy/kubernetes", f))
		}
		c.kubectl("rollout", "status", "deployment/legacy-billing", "-n", namespace, "--timeout=2m")
		c.logSlow(t, "deployment.yaml's rollout", start)
	})
}

// logSlow logs how long a step took, and the namespace's latest events
// when that was more than 20 seconds (kwok makes pods Ready at once).
func (c *cluster) logSlow(t *testing.T, what string, start time.Time) {
	t.Helper()
	took := time.Since(start).Round(time.Millisecond)
	t.Logf("%s took %v", what, took)
	if took > 20*time.Second {
		out, _ := c.kubectlErr("get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
		t.Logf("the latest events:\n%s", tail(out, 25))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// createSecrets creates the Secrets the values files name, with a client
// certificate made for the test and a proxy user.
func (c *cluster) createSecrets(t *testing.T) {
	t.Helper()
	ca, err := pki.NewCA("clustertest CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "api.acme.payrails.io", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pemPath, keyPath, err := leaf.WriteFiles(dir, "domain.pem", "domain.key")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"payrails-client-cert", "payrails-live-cert", "payrails-staging-cert"} {
		c.kubectl("create", "secret", "generic", name, "-n", namespace, "--from-file="+pemPath, "--from-file="+keyPath)
	}
	c.kubectl("create", "secret", "generic", "payrails-proxy-auth", "-n", namespace, "--from-literal=auth=billing:"+randomHex(t))
	c.kubectl("create", "secret", "generic", "payrails-live-client-secret", "-n", namespace, "--from-literal=client-secret="+randomHex(t))
}

// deployments lists the Deployments of a Helm release.
func (c *cluster) deployments(release string) []string {
	c.t.Helper()
	out := c.kubectl("get", "deployments", "-n", namespace, "-l", "app.kubernetes.io/instance="+release,
		"-o", "jsonpath={.items[*].metadata.name}")
	return strings.Fields(out)
}

// activeReplicaSet is the ReplicaSet of a Deployment that has its desired
// replicas (after a finished rollout, the one of the current template).
func (c *cluster) activeReplicaSet(deployment string) string {
	c.t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name            string
				OwnerReferences []struct{ Name string }
			}
			Spec struct{ Replicas int }
		}
	}
	if err := json.Unmarshal([]byte(c.kubectl("get", "replicasets", "-n", namespace, "-o", "json")), &list); err != nil {
		c.t.Fatal(err)
	}
	var active []string
	for _, rs := range list.Items {
		if len(rs.Metadata.OwnerReferences) == 1 && rs.Metadata.OwnerReferences[0].Name == deployment && rs.Spec.Replicas > 0 {
			active = append(active, rs.Metadata.Name)
		}
	}
	if len(active) != 1 {
		c.t.Fatalf("deployment %s has ReplicaSets with replicas %q, want one after its rollout", deployment, active)
	}
	return active[0]
}

// readyReplicas is the Deployment's status.readyReplicas.
func (c *cluster) readyReplicas(deployment string) (int, error) {
	out, err := c.kubectlErr("get", "deployment", deployment, "-n", namespace, "-o", "jsonpath={.status.readyReplicas}")
	if err != nil {
		return 0, err
	}
	if out == "" {
		return 0, nil
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// podNodes maps the release's running pods that are not being deleted to
// their nodes.
func (c *cluster) podNodes(release string) map[string]string {
	c.t.Helper()
	out := c.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance="+release,
		"--field-selector=status.phase=Running",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{"\n"}{end}`)
	m := map[string]string{}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) == 2 { // not being deleted
			m[f[0]] = f[1]
		}
	}
	return m
}

// drain drains the nodes of the gateway's pods while a watcher samples its
// Ready replicas. First every node is cordoned, so an evicted pod's
// replacement cannot start: the PodDisruptionBudget (maxUnavailable 1) must
// then refuse to evict the second replica. Then the nodes are uncordoned
// but the drained ones, and the drain finishes.
func (c *cluster) drain(t *testing.T, release, deployment string) {
	nodes := c.podNodes(release)
	var used []string
	for _, n := range nodes {
		if !slices.Contains(used, n) {
			used = append(used, n)
		}
	}
	slices.Sort(used)
	if len(nodes) != 2 || len(used) != 2 {
		t.Fatalf("the gateway's pods run on %v; want 2 pods on 2 nodes (topology spread)", nodes)
	}
	minReady, stop := c.watchReady(deployment)
	defer stop()

	c.kubectl("cordon", "--selector", "type=kwok")
	c.kubectl("drain", used[0], "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
	out, err := c.kubectlErr("drain", used[1], "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=10s")
	if err == nil {
		t.Fatalf("draining %s while the other replica's replacement could not start succeeded; the PodDisruptionBudget must refuse it:\n%s", used[1], out)
	}
	if !strings.Contains(out, "disruption budget") {
		t.Errorf("the refused drain of %s does not name the disruption budget:\n%s", used[1], out)
	}
	for _, n := range []string{"kwok-zone-a", "kwok-zone-b", "kwok-zone-c"} {
		if !slices.Contains(used, n) {
			c.kubectl("uncordon", n)
		}
	}
	c.kubectl("drain", used[1], "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s")
	c.kubectl("rollout", "status", "deployment/"+deployment, "-n", namespace, "--timeout=2m")
	for pod, node := range c.podNodes(release) {
		if slices.Contains(used, node) {
			t.Errorf("pod %s still runs on drained node %s", pod, node)
		}
	}
	if n := minReady(); n < 1 {
		t.Errorf("the gateway had %d Ready replicas at some point during the drain; the PodDisruptionBudget must keep one", n)
	}
	c.kubectl("uncordon", "--selector", "type=kwok")
}

// watchReady samples the Deployment's Ready replicas until stopped;
// lowestSeen returns the lowest count seen.
func (c *cluster) watchReady(deployment string) (lowestSeen func() int, stop func()) {
	var (
		mu     sync.Mutex
		lowest = 1 << 30
		done   = make(chan struct{})
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for {
			if n, err := c.readyReplicas(deployment); err == nil {
				mu.Lock()
				lowest = min(lowest, n)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return lowest },
		func() { close(done); wg.Wait() }
}

// dryRunAll: every file in deploy/kubernetes/ and every object the chart
// renders (each ci/ values file, the example parent chart) is accepted by
// the API server with strict field validation.
func (c *cluster) dryRunAll(t *testing.T, root string) {
	k8sFiles, _ := filepath.Glob(filepath.Join(root, "deploy/kubernetes", "*.yaml"))
	if len(k8sFiles) < 4 {
		t.Fatalf("found %d files in deploy/kubernetes", len(k8sFiles))
	}
	// A namespace of its own, as restricted as the first, where none of these objects
	// exists yet (kubectl apply warns about objects that kubectl create made).
	c.apply(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels: {pod-security.kubernetes.io/enforce: restricted, pod-security.kubernetes.io/warn: restricted}
`, dryRunNamespace))
	for _, f := range k8sFiles {
		c.dryRun(t, "deploy/kubernetes/"+filepath.Base(f), f)
	}
	dir := t.TempDir()
	values, _ := filepath.Glob(filepath.Join(root, chartDir, "ci", "*-values.yaml"))
	kinds := map[string]bool{}
	for _, v := range values {
		out := c.helm("template", "dryrun", filepath.Join(root, chartDir), "--namespace", dryRunNamespace, "--values", v)
		f := filepath.Join(dir, filepath.Base(v))
		writeFile(t, f, out)
		c.dryRun(t, chartDir+" with ci/"+filepath.Base(v), f)
		for line := range strings.Lines(out) {
			if k, ok := strings.CutPrefix(line, "kind: "); ok {
				kinds[strings.TrimSpace(k)] = true
			}
		}
	}
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "ConfigMap"} {
		if !kinds[k] {
			t.Errorf("no values file in ci/ renders a %s; the dry run must cover it", k)
		}
	}
	// The example parent chart, with the proxy chart as its dependency.
	exDir := filepath.Join(dir, "examples", "legacy-billing")
	copyTree(t, filepath.Join(root, example), exDir)
	copyTree(t, filepath.Join(root, chartDir), filepath.Join(dir, "payrails-mtls-proxy"))
	c.helm("dependency", "build", exDir)
	out := c.helm("template", "legacy-billing", exDir, "--namespace", dryRunNamespace)
	f := filepath.Join(dir, "legacy-billing.yaml")
	writeFile(t, f, out)
	c.dryRun(t, example, f)
}

func (c *cluster) dryRun(t *testing.T, what, file string) {
	t.Helper()
	if out, err := c.kubectlErr("apply", "--dry-run=server", "--validate=strict", "-n", dryRunNamespace, "-f", file); err != nil {
		t.Errorf("%s is not accepted by the API server: %v", what, err)
	} else if strings.Contains(out, "Warning") {
		t.Errorf("%s: the API server warns:\n%s", what, out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a folder of regular files.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
