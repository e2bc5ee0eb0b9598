// Package clustertest holds only tests: it installs the Helm chart on a real
// Kubernetes control plane on loopback (etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler built by .ci/k8s-tools.sh, kwok
// for nodes and pods) in a namespace that enforces the restricted Pod
// Security Standard: install with each ci/ values file, upgrade, rollback,
// a drain under the PodDisruptionBudget, and a strict server-side dry run of
// every example. Without the binaries it skips, or fails under
// PAYRAILS_PROXY_REQUIRE_INTEROP=1.
package clustertest
