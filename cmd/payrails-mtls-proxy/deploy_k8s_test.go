package main

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"go.yaml.in/yaml/v3"
)

// TestDeployKubernetesConfigMap: the configuration in the ConfigMap loads
// with the environment the Deployment gives the sidecar.
func TestDeployKubernetesConfigMap(t *testing.T) {
	docs, err := deployYAMLDocs(deployRead(t, "deploy/kubernetes/configmap.yaml"))
	if err != nil || len(docs) != 1 {
		t.Fatalf("configmap.yaml: %d documents, %v", len(docs), err)
	}
	data, _ := docs[0].(map[string]any)["data"].(map[string]any)
	text, _ := data["config.yaml"].(string)
	if text == "" {
		t.Fatal("configmap.yaml has no data.config.yaml")
	}
	env := deployDockerfileEnv(t)
	for k, v := range deploySidecar(t).envMap() {
		env[k] = v
	}
	if _, err := deployParse(t, []byte(text), "/etc/payrails-mtls-proxy/config.yaml", env); err != nil {
		t.Fatalf("the ConfigMap's config.yaml does not load with the Deployment's environment:\n%v", err)
	}
}

// deployContainer is the part of a Kubernetes container these tests read.
type deployContainer struct {
	Name          string   `yaml:"name"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Args          []string `yaml:"args"`
	Env           []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   *deployProbe `yaml:"livenessProbe"`
	ReadinessProbe  *deployProbe `yaml:"readinessProbe"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type deployProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type deployK8s struct {
	Spec struct {
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec deployPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// deployPodSpec is the part of a pod spec these tests read.
type deployPodSpec struct {
	TerminationGracePeriodSeconds int               `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []deployContainer `yaml:"initContainers"`
	Containers                    []deployContainer `yaml:"containers"`
	Volumes                       []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode int    `yaml:"defaultMode"`
		} `yaml:"secret"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

func (c deployContainer) envMap() map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func deployDeployment(t *testing.T) deployK8s {
	t.Helper()
	var d deployK8s
	if err := yaml.Unmarshal(deployRead(t, "deploy/kubernetes/deployment.yaml"), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// deploySidecar is the proxy's container in the Deployment: a native
// sidecar (init container that keeps running) or a plain container.
func deploySidecar(t *testing.T) deployContainer {
	t.Helper()
	spec := deployDeployment(t).Spec.Template.Spec
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if c.Name == "payrails-mtls-proxy" {
			return c
		}
	}
	t.Fatal("deployment.yaml has no container named payrails-mtls-proxy")
	return deployContainer{}
}

// TestDeployKubernetesDeployment: the example Deployment probes the admin
// port, locks the sidecar down, mounts the certificate Secret so that a
// rotation is seen, gives shutdown its time and points the app at the proxy.
func TestDeployKubernetesDeployment(t *testing.T) {
	d := deployDeployment(t)
	spec := d.Spec.Template.Spec
	side := deploySidecar(t)
	checkDeployProbes(t, side, deployPort(t, config.DefaultAdminListen))

	sc := side.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		!slices.Contains(sc.Capabilities.Drop, "ALL") || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("sidecar securityContext %+v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, "+
			"capabilities drop ALL, seccomp RuntimeDefault", sc)
	}
	checkDeploySecretMounts(t, spec, side)

	shutdown := deployDefaultShutdown(t)
	if grace := time.Duration(spec.TerminationGracePeriodSeconds) * time.Second; grace <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed timeouts.shutdown %v", grace, shutdown)
	}
	app := spec.Containers[0].envMap()
	proxyURL := "http://127.0.0.1:" + strconv.Itoa(deployPort(t, config.DefaultListen))
	if app["HTTP_PROXY"] != proxyURL || app["http_proxy"] != proxyURL {
		t.Errorf("app container: HTTP_PROXY %q, http_proxy %q; want both %s", app["HTTP_PROXY"], app["http_proxy"], proxyURL)
	}
}

// checkDeployProbes: liveness asks /healthz and readiness /readyz, both on
// the admin port (by number or by name).
func checkDeployProbes(t *testing.T, side deployContainer, admin int) {
	t.Helper()
	ports := map[string]int{}
	for _, p := range side.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, pr := range []struct {
		name string
		p    *deployProbe
		path string
	}{{"livenessProbe", side.LivenessProbe, "/healthz"}, {"readinessProbe", side.ReadinessProbe, "/readyz"}} {
		if pr.p == nil {
			t.Errorf("sidecar has no %s", pr.name)
			continue
		}
		port, _ := pr.p.HTTPGet.Port.(int)
		if name, ok := pr.p.HTTPGet.Port.(string); ok {
			port = ports[name]
		}
		if pr.p.HTTPGet.Path != pr.path || port != admin {
			t.Errorf("%s asks %s on port %d, want %s on the admin port %d", pr.name, pr.p.HTTPGet.Path, port, pr.path, admin)
		}
	}
}

// checkDeploySecretMounts: Secret volumes are mode 0400, never mounted
// with a subPath (which never sees a rotation), and the sidecar mounts one
// read-only at its certificate folder.
func checkDeploySecretMounts(t *testing.T, spec deployPodSpec, side deployContainer) {
	t.Helper()
	secretVolumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secretVolumes[v.Name] = true
			if v.Secret.DefaultMode != 0o400 {
				t.Errorf("Secret volume %s: defaultMode %#o, want 0400", v.Name, v.Secret.DefaultMode)
			}
		}
	}
	certDir := side.envMap()["PAYRAILS_PROXY_CERT_DIR"]
	mounted := false
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, m := range c.VolumeMounts {
			if !secretVolumes[m.Name] {
				continue
			}
			if m.SubPath != "" {
				t.Errorf("container %s mounts Secret volume %s with subPath %q: a subPath mount never sees a rotated certificate",
					c.Name, m.Name, m.SubPath)
			}
			if c.Name == side.Name && m.MountPath == certDir && m.ReadOnly {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("the sidecar does not mount a Secret read-only at its certificate folder %q", certDir)
	}
}

// deployNetworkPolicy is the part of a NetworkPolicy these tests read.
type deployNetworkPolicy struct {
	Kind string `yaml:"kind"`
	Spec struct {
		PodSelector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"podSelector"`
		PolicyTypes []string `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				NamespaceSelector *struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"namespaceSelector"`
				PodSelector *struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"podSelector"`
				IPBlock any `yaml:"ipBlock"`
			} `yaml:"from"`
			Ports []struct {
				Protocol string `yaml:"protocol"`
				Port     any    `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

// TestDeployKubernetesNetworkPolicy: a NetworkPolicy under
// deploy/kubernetes selects the Deployment's pods and admits, on ingress,
// only the admin port and only from selected pods (the scrapers); nothing
// reaches the proxy port, which listens on loopback anyway.
func TestDeployKubernetesNetworkPolicy(t *testing.T) {
	policies := deployNetworkPolicies(t)
	if len(policies) != 1 {
		t.Fatalf("%d NetworkPolicies under deploy/kubernetes, want one for the admin port", len(policies))
	}
	np := policies[0].Spec
	d := deployDeployment(t)
	podLabels := d.Spec.Template.Metadata.Labels
	if len(np.PodSelector.MatchLabels) == 0 {
		t.Error("the NetworkPolicy's podSelector selects every pod of the namespace; want the Deployment's")
	}
	for k, v := range np.PodSelector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("podSelector %s=%s does not match the Deployment's pod labels %v", k, v, podLabels)
		}
	}
	if !slices.Contains(np.PolicyTypes, "Ingress") {
		t.Errorf("policyTypes %v, want Ingress", np.PolicyTypes)
	}
	side := deploySidecar(t)
	admin := deployPort(t, config.DefaultAdminListen)
	named := map[string]int{}
	for _, p := range side.Ports {
		named[p.Name] = p.ContainerPort
	}
	if len(np.Ingress) == 0 {
		t.Error("the NetworkPolicy admits nothing: the scrapes would be refused too")
	}
	checkIngressRules(t, policies[0], admin, named)
}

// deployNetworkPolicies returns the NetworkPolicies of every YAML document
// under deploy/kubernetes.
func deployNetworkPolicies(t *testing.T) []deployNetworkPolicy {
	t.Helper()
	var policies []deployNetworkPolicy
	for _, f := range deployFiles(t) {
		if !strings.HasPrefix(f.rel, "deploy/kubernetes/") || !deployIsYAML(f.rel) {
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader(f.data))
		for {
			var np deployNetworkPolicy
			if err := dec.Decode(&np); err != nil {
				break
			}
			if np.Kind == "NetworkPolicy" {
				policies = append(policies, np)
			}
		}
	}
	return policies
}

// checkIngressRules: every ingress rule of policy admits only the admin
// port, by number, over TCP, and only from pods chosen by labels in a
// namespace chosen by labels. Not by its name in named: the sidecar is an
// init container, whose named ports some network plugins did not resolve,
// so the rule matched nothing (projectcalico/calico#8881,
// kubernetes/kubernetes#125285).
func checkIngressRules(t *testing.T, policy deployNetworkPolicy, admin int, named map[string]int) {
	t.Helper()
	for i, rule := range policy.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress rule %d admits every port; want only the admin port %d", i, admin)
		}
		for _, p := range rule.Ports {
			port, _ := p.Port.(int)
			if name, ok := p.Port.(string); ok {
				t.Errorf("ingress rule %d admits the port named %q (%d); give the number: the sidecar is an init container, "+
					"whose named ports some network plugins do not resolve (projectcalico/calico#8881)", i, name, named[name])
				continue
			}
			if port != admin || (p.Protocol != "" && p.Protocol != "TCP") {
				t.Errorf("ingress rule %d admits port %v/%s; want only the admin port %d/TCP", i, p.Port, p.Protocol, admin)
			}
		}
		if len(rule.From) == 0 {
			t.Errorf("ingress rule %d admits every source; want the scrapers' pods only", i)
		}
		for _, from := range rule.From {
			if from.IPBlock != nil || from.PodSelector == nil || len(from.PodSelector.MatchLabels) == 0 ||
				from.NamespaceSelector == nil || len(from.NamespaceSelector.MatchLabels) == 0 {
				t.Errorf("ingress rule %d: source %+v; want pods chosen by labels in a namespace chosen by labels", i, from)
			}
		}
	}
}
