package clustertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// envBin names the folder of the control plane's binaries, as
// .ci/k8s-tools.sh prints it (kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl, kwok and kwok-stages.yaml); without it they are
// looked up in PATH.
const envBin = "PAYRAILS_PROXY_K8S_BIN"

// cluster is a control plane on loopback: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, and kwok for nodes and pods
// (kwok's fast stages: a scheduled pod is Ready at once; no container runs).
type cluster struct {
	t          *testing.T
	dir        string
	kubeconfig string
	kubectlBin string
	helmBin    string
	procs      []*proc
}

// proc is a control-plane process: its log and its end (done is closed
// when it has exited, with err set).
type proc struct {
	name, log string
	done      chan struct{}
	err       error
}

// checkRunning fails the test, with the end of its log, if a control-plane
// process has ended: a poll need not wait out its deadline then.
func (c *cluster) checkRunning() {
	c.t.Helper()
	for _, p := range c.procs {
		select {
		case <-p.done:
			c.t.Fatalf("%s exited (%v); the end of its log:\n%s", p.name, p.err, tailFile(p.log, 30))
		default:
		}
	}
}

// tool finds a control-plane binary, or skips (fails under
// PAYRAILS_PROXY_REQUIRE_INTEROP=1) saying how to build it.
func tool(t *testing.T, name string) string {
	t.Helper()
	if dir := os.Getenv(envBin); dir != "" {
		if p := filepath.Join(dir, name); isFile(p) {
			return p
		}
	} else if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (in %s=%q, else PATH); build the control plane once with "+
		"`export %s=$(bash .ci/k8s-tools.sh)` (about 10 minutes on 2 cores)", name, envBin, os.Getenv(envBin), envBin)
	if interop.Required() {
		t.Fatalf("%s (%s=1)", msg, interop.EnvRequire)
	}
	t.Skip(msg)
	return ""
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// startCluster starts the control plane in a temporary folder and stops it
// when the test ends. It returns once the API server is ready, the
// controllers and the scheduler run, and nodes zone-a, zone-b and zone-c
// (one per zone) are Ready.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	bins := map[string]string{}
	for _, n := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwok-stages.yaml"} {
		bins[n] = tool(t, n)
	}
	etcd := interop.Tool(t, "etcd")
	c := &cluster{t: t, dir: t.TempDir(), kubectlBin: bins["kubectl"], helmBin: interop.Tool(t, "helm")}

	etcdClient, etcdPeer, apiPort := freePort(t), freePort(t), freePort(t)
	c.start("etcd", etcd, "--name", "default", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", "http://"+etcdClient, "--advertise-client-urls", "http://"+etcdClient,
		"--listen-peer-urls", "http://"+etcdPeer, "--initial-advertise-peer-urls", "http://"+etcdPeer,
		"--initial-cluster", "default=http://"+etcdPeer, "--log-level", "warn")

	token := "clustertest-" + randomHex(t)
	c.write("tokens.csv", token+",admin,admin,system:masters\n")
	saKey := c.serviceAccountKey()
	_, port, _ := net.SplitHostPort(apiPort)
	c.start("kube-apiserver", bins["kube-apiserver"],
		"--etcd-servers", "http://"+etcdClient,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", port,
		"--cert-dir", filepath.Join(c.dir, "apiserver"),
		"--token-auth-file", filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(c.dir, "sa.pub"), "--service-account-signing-key-file", saKey,
		// Virtual addresses that only this API server hands out; nothing is routed to them.
		"--service-cluster-ip-range", "10.96.0.0/16",
		// No kube-proxy or network: the API server must not manage the kubernetes
		// Service's endpoints itself (issue 25).
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false", "--profiling=false",
		// Debian's etcd (3.4.23) predates the watch progress requests that streaming lists
		// need; without this the API server refuses such watches, and kwok, which asks for
		// them, stalls between relists.
		"--feature-gates=WatchList=false")
	c.kubeconfig = c.write("kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, apiPort, token))
	poll.Until(t, "kube-apiserver /readyz", 90*time.Second, func() bool {
		c.checkRunning()
		_, err := c.kubectlErr("get", "--raw", "/readyz")
		return err == nil
	})

	c.start("kube-controller-manager", bins["kube-controller-manager"], "--kubeconfig", c.kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", portOf(freePort(t)),
		"--service-account-private-key-file", saKey, "--use-service-account-credentials=false",
		"--root-ca-file", filepath.Join(c.dir, "apiserver", "apiserver.crt"), "--profiling=false")
	c.start("kube-scheduler", bins["kube-scheduler"], "--kubeconfig", c.kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", portOf(freePort(t)), "--profiling=false")
	// kwok gives the pods it manages addresses from --cidr and the nodes --node-ip: status
	// fields only, nothing is sent to them.
	c.start("kwok", bins["kwok"], "--kubeconfig", c.kubeconfig, "--config", bins["kwok-stages.yaml"],
		"--manage-all-nodes=true", "--cidr", "10.0.0.1/24", "--node-ip", "10.0.0.1",
		"--node-lease-duration-seconds", "40", "--server-address", "127.0.0.1:"+portOf(freePort(t)))

	for _, zone := range []string{"zone-a", "zone-b", "zone-c"} {
		c.apply(fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: kwok-%[1]s
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-%[1]s, kubernetes.io/os: linux, kubernetes.io/arch: amd64, topology.kubernetes.io/zone: %[1]s, type: kwok}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
`, zone))
	}
	c.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
	poll.Until(t, "the default ServiceAccount (kube-controller-manager runs)", 60*time.Second, func() bool {
		c.checkRunning()
		_, err := c.kubectlErr("get", "serviceaccount", "default", "-n", "default")
		return err == nil
	})
	return c
}

// start runs a control-plane process with its output in name.log, and
// stops it (SIGTERM, then SIGKILL) when the test ends, showing the end of
// its log if the test failed.
func (c *cluster) start(name, bin string, args ...string) {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Clients list and watch, without streaming lists (see WatchList=false above).
	cmd.Env = append(os.Environ(), "KUBE_FEATURE_WatchListClient=false")
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", name, err)
	}
	pr := &proc{name: name, log: logPath, done: make(chan struct{})}
	go func() { pr.err = cmd.Wait(); close(pr.done) }()
	c.procs = append(c.procs, pr)
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-pr.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-pr.done
		}
		logFile.Close()
		if c.t.Failed() {
			c.t.Logf("the end of %s's log:\n%s", name, tailFile(logPath, 30))
		}
	})
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	return tail(string(data), n)
}

// write writes a file into the cluster's folder and returns its path.
func (c *cluster) write(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// serviceAccountKey writes the key the API server signs service account
// tokens with (sa.key) and its public half (sa.pub), and returns the key's
// path.
func (c *cluster) serviceAccountKey() string {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		c.t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write("sa.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	return c.write("sa.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
}

// run runs a tool against the cluster with a deadline.
func (c *cluster) run(bin string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBE_FEATURE_WatchListClient=false", "KUBECONFIG="+c.kubeconfig, "HELM_CACHE_HOME="+filepath.Join(c.dir, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.dir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(c.dir, "helm-data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *cluster) kubectlErr(args ...string) (string, error) {
	c.t.Helper()
	return c.run(c.kubectlBin, args...)
}

// kubectl runs kubectl and fails the test on an error.
func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := c.run(c.kubectlBin, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// helm runs helm and fails the test on an error.
func (c *cluster) helm(args ...string) string {
	c.t.Helper()
	out, err := c.run(c.helmBin, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// apply applies a manifest given as text.
func (c *cluster) apply(manifest string, args ...string) {
	c.t.Helper()
	f := filepath.Join(c.dir, fmt.Sprintf("manifest-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.kubectl(append([]string{"apply", "-f", f}, args...)...)
}

// freePort returns a loopback HOST:PORT nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func portOf(hostPort string) string { _, p, _ := net.SplitHostPort(hostPort); return p }

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}
