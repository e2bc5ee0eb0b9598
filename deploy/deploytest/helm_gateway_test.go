package deploytest

import (
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/dockerfile"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestHelmGateway renders gateway mode with each gateway values file and
// checks what makes it a working, closed egress gateway.
func TestHelmGateway(t *testing.T) {
	c := newChart(t)
	for _, f := range []string{
		filepath.Join(c.dir, "ci", "gateway-values.yaml"),
		filepath.Join(c.dir, "ci", "gateway-autoscaling-values.yaml"),
		"testdata/full-values.yaml",
	} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := c.template(t, f)
			if err != nil {
				t.Fatal(err)
			}
			checkGateway(t, decode(t, out))
		})
	}
}

func checkGateway(t *testing.T, m manifests) {
	t.Helper()
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.netpols) != 1 || len(m.configMaps) != 1 {
		t.Fatalf("rendered %d Deployments, %d Services, %d PodDisruptionBudgets, %d NetworkPolicies, %d ConfigMaps; want one of each",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.netpols), len(m.configMaps))
	}
	d := m.deployments[0]
	pod := labels.Set(d.Spec.Template.Labels)
	proxy := container(t, d.Spec.Template.Spec.Containers, "payrails-mtls-proxy")
	cfg := checkPod(t, m, d.Spec.Template.Spec, proxy)

	// Listening beyond loopback, so closed by address and password.
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" {
		t.Errorf("the proxy listens on %s; a gateway must listen on 0.0.0.0 to be reached through its Service", cfg.Listen)
	}
	if cfg.Access.ProxyAuthFile == "" {
		t.Error("the gateway has no access.proxy_auth_file: anyone the NetworkPolicy lets in could use the merchant's certificate")
	}
	for _, p := range cfg.Access.AllowCIDRs {
		if p.Addr().IsLoopback() {
			t.Errorf("access.allow_cidrs has %s: a gateway's clients are other pods", p)
		}
	}

	// Replicas, spread and disruption budget.
	switch {
	case len(m.hpas) == 1:
		h := m.hpas[0]
		if h.Spec.ScaleTargetRef.Name != d.Name || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("HPA scales %q from %v replicas; want Deployment %q from at least 2", h.Spec.ScaleTargetRef.Name, h.Spec.MinReplicas, d.Name)
		}
		if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("HPA metrics %+v: want CPU utilisation", h.Spec.Metrics)
		}
		if d.Spec.Replicas != nil {
			t.Error("with an HPA the Deployment must leave replicas out, or each helm upgrade resets the HPA's choice")
		}
	case d.Spec.Replicas == nil || *d.Spec.Replicas < 2:
		t.Errorf("Deployment replicas %v, want at least 2", d.Spec.Replicas)
	}
	pdb := m.pdbs[0]
	if !selects(t, pdb.Spec.Selector, pod) || pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Errorf("PodDisruptionBudget %+v does not limit the gateway's pods %v", pdb.Spec, pod)
	}
	spread := d.Spec.Template.Spec.TopologySpreadConstraints
	if len(spread) == 0 {
		t.Error("no topologySpreadConstraints: all replicas may land on one node")
	}
	for _, s := range spread {
		if !selects(t, s.LabelSelector, pod) {
			t.Errorf("topology spread over %s does not select the gateway's pods", s.TopologyKey)
		}
	}

	// The Service reaches the proxy port; the NetworkPolicy admits it only
	// from client pods, and the admin port only from monitoring.
	svc := m.services[0]
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pod) || len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service selector %v ports %+v: want the gateway's pods, one port", svc.Spec.Selector, svc.Spec.Ports)
	}
	if got, want := portNumber(t, proxy, svc.Spec.Ports[0].TargetPort.String()), port(t, cfg.Listen); got != want {
		t.Errorf("the Service targets container port %d, the proxy listens on %d", got, want)
	}
	checkNetworkPolicy(t, m.netpols[0], pod, proxy, cfg)
}

func checkNetworkPolicy(t *testing.T, np networkingv1.NetworkPolicy, pod labels.Set, proxy corev1.Container, cfg *config.Config) {
	t.Helper()
	if !selects(t, &np.Spec.PodSelector, pod) || !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Fatalf("NetworkPolicy selects %v with policy types %v; want the gateway's pods, Ingress", np.Spec.PodSelector, np.Spec.PolicyTypes)
	}
	admitted := map[int]bool{}
	for i, r := range np.Spec.Ingress {
		if len(r.From) == 0 || len(r.Ports) == 0 {
			t.Errorf("ingress rule %d admits %v on ports %v: an empty list admits everything", i, r.From, r.Ports)
			continue
		}
		for _, p := range r.Ports {
			n := portNumber(t, proxy, p.Port.String())
			admitted[n] = true
			for _, peer := range r.From {
				switch n {
				case port(t, cfg.Listen):
					if peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0 || peer.IPBlock != nil {
						t.Errorf("ingress rule %d admits the proxy port from %+v; want only pods with the client label", i, peer)
					}
				case port(t, cfg.AdminListen):
					if peer.NamespaceSelector == nil || peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "" || peer.PodSelector != nil {
						t.Errorf("ingress rule %d admits the admin port from %+v; want only the monitoring namespace", i, peer)
					}
				default:
					t.Errorf("ingress rule %d admits port %d, which is neither the proxy nor the admin port", i, n)
				}
			}
		}
	}
	if !admitted[port(t, cfg.Listen)] || !admitted[port(t, cfg.AdminListen)] {
		t.Errorf("the NetworkPolicy admits ports %v; want the proxy port %s and the admin port %s", admitted, cfg.Listen, cfg.AdminListen)
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("label selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(set)
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// portNumber resolves a port given by name or number on the container.
func portNumber(t *testing.T, c corev1.Container, p string) int {
	t.Helper()
	for _, cp := range c.Ports {
		if cp.Name == p || p == strconv.Itoa(int(cp.ContainerPort)) {
			return int(cp.ContainerPort)
		}
	}
	t.Errorf("container %s has no port %q (ports %+v)", c.Name, p, c.Ports)
	return -1
}

func port(t *testing.T, hostPort string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%q: %v", hostPort, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: port %v", hostPort, err)
	}
	return n
}

// checkPod checks the proxy container in its pod and returns the
// configuration it will run with: its config.yaml, from the ConfigMap it
// mounts, loaded by the config package with the image's environment and
// the container's. Every probe asks the admin port; every file the
// configuration names is in a volume mounted as a directory.
func checkPod(t *testing.T, m manifests, spec corev1.PodSpec, c corev1.Container) *config.Config {
	t.Helper()
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) || c.Args[0] != "serve" {
		t.Fatalf("container args %q: want serve --config FILE", c.Args)
	}
	file := c.Args[i+1]
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	var cm *corev1.ConfigMap
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		switch {
		case !ok:
			t.Errorf("volumeMount %s has no volume", vm.Name)
		case vm.SubPath != "" || vm.SubPathExpr != "":
			t.Errorf("volumeMount %s uses subPath: a subPath mount is a copy and never sees a rotated Secret", vm.Name)
		case !vm.ReadOnly:
			t.Errorf("volumeMount %s is writable", vm.Name)
		case v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400):
			t.Errorf("Secret volume %s: defaultMode %v, want 0400", v.Name, v.Secret.DefaultMode)
		case v.ConfigMap != nil && vm.MountPath == filepath.Dir(file):
			for k := range m.configMaps {
				if m.configMaps[k].Name == v.ConfigMap.Name {
					cm = &m.configMaps[k]
				}
			}
		}
	}
	if cm == nil || cm.Data[filepath.Base(file)] == "" {
		t.Fatalf("no rendered ConfigMap with %s is mounted at %s", filepath.Base(file), filepath.Dir(file))
	}
	env := dockerfileEnv(t)
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	cfg, err := config.Parse([]byte(cm.Data[filepath.Base(file)]), file, lookup(env), config.Overrides{}, false)
	if err != nil {
		t.Fatalf("the rendered %s does not load with the image's and the container's environment:\n%v\n%s", file, err, cm.Data[filepath.Base(file)])
	}
	for _, p := range configFiles(cfg) {
		if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
			return p == vm.MountPath || strings.HasPrefix(p, vm.MountPath+"/")
		}) {
			t.Errorf("the configuration names %s, which is in no volume the container mounts", p)
		}
	}
	for name, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		want := map[string]string{"readiness": "/readyz"}[name]
		if want == "" {
			want = "/healthz"
		}
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != want {
			t.Errorf("%s probe %+v: want GET %s on the admin port", name, pr, want)
			continue
		}
		if got := portNumber(t, c, pr.HTTPGet.Port.String()); got != port(t, cfg.AdminListen) {
			t.Errorf("%s probe on port %d, but the admin port is %s", name, got, cfg.AdminListen)
		}
	}
	if host, _, _ := net.SplitHostPort(cfg.AdminListen); host != "0.0.0.0" {
		t.Errorf("admin_listen %s: the kubelet probes the pod's IP, so the admin port must be on 0.0.0.0", cfg.AdminListen)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || float64(*g) <= cfg.Timeouts.Shutdown.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %v must exceed timeouts.shutdown %v", g, cfg.Timeouts.Shutdown)
	}
	return cfg
}

// configFiles are the files and folders a configuration makes the proxy read.
func configFiles(cfg *config.Config) []string {
	out := []string{cfg.Access.ProxyAuthFile, cfg.MITM.CACertFile, cfg.MITM.CAKeyFile}
	for _, u := range cfg.Upstreams {
		out = append(out, u.CertDir, u.CertFile, u.KeyFile, u.KeyPassphraseFile, u.CAFile, u.Token.ClientSecretFile, u.ViaAuthFile)
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// dockerfileEnv returns the variables the image sets with ENV, which hold
// in every container of it unless the container sets them too.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	env := dockerfile.Parse(readRepo(t, "Dockerfile")).Env()
	if env["PAYRAILS_PROXY_LISTEN"] == "" {
		t.Fatal("found no ENV PAYRAILS_PROXY_LISTEN in the Dockerfile; has its format changed?")
	}
	return env
}
