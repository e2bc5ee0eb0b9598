#!/usr/bin/env bash
# Builds the Kubernetes control plane CI installs the chart on, once, into a cache outside
# the clone, and prints the folder of the binaries:
#
#   bin=$(bash .ci/k8s-tools.sh)   # kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm
#
# (and kwok-stages.yaml, kwok's stages). All six come from the module .ci/k8s
# (k8s.io/kubernetes with its staging modules from the module proxy; kwok, the nodes; helm, at
# the version .ci/helm-version pins), built by one `go build`, so that they share one compilation
# of the Kubernetes libraries. etcd comes from Debian (apt-get install etcd-server). A cold
# build takes about 10 minutes on 2 cores (the API server about 4.5); the folder is keyed by
# the versions and .ci/k8s/go.sum, so a second run only checks that it is there.
#
# Environment: PAYRAILS_PROXY_CI_CACHE (default /var/cache/payrails-mtls-proxy-ci), and
# GOTOOLCHAIN (default go1.27.3, go.mod's toolchain), K8S_TOOLS_NICE (the builds' nice level,
# default 10; .ci/run builds in the background at 19). Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
export PATH="/usr/local/go/bin:$PATH"
# The compiler with fewer collections: about a quarter less CPU on a cold build (.ci/run's GOGC note).
export GOGC="${GOGC:-400}"

k8s_version=v1.37.2   # .ci/k8s/go.mod requires it; the staging modules are v0.37.2
kwok_version=v0.8.0   # sigs.k8s.io/kwok
helm_version=$(cat .ci/helm-version)
# .ci/k8s/go.mod requires the versions above: say so plainly when one of them was changed alone.
for pin in "k8s.io/kubernetes $k8s_version" "sigs.k8s.io/kwok $kwok_version" "helm.sh/helm/v3 $helm_version"; do
  if ! grep -qE "^[[:space:]]*${pin% *} ${pin#* }\$" .ci/k8s/go.mod; then
    echo "k8s-tools: .ci/k8s/go.mod does not require ${pin% *} ${pin#* }; change both together (cd .ci/k8s && go get ${pin% *}@${pin#* })" >&2
    exit 1
  fi
done

cache="${PAYRAILS_PROXY_CI_CACHE:-/var/cache/payrails-mtls-proxy-ci}"
sum=$(grep -hv "^//" .ci/k8s/go.mod .ci/k8s/go.sum | sha256sum | cut -c1-12)   # comments aside
bin="$cache/k8s/$k8s_version-kwok-$kwok_version-helm-$helm_version-$sum-$(go env GOVERSION)/bin"
tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

have_all() {
  local t
  for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done
}

if ! have_all; then
  start=$SECONDS
  tmp="$bin.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # The version the binaries report (kubectl version, the API server's /version), as
  # Kubernetes' own build stamps it (hack/lib/version.sh).
  minor=${k8s_version#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "k8s-tools: building kube-apiserver, kube-controller-manager, kube-scheduler and kubectl $k8s_version, kwok $kwok_version and helm $helm_version (about 10 minutes cold on 2 cores)" >&2
  # -mod=readonly: .ci/k8s/go.sum is the pinned list; a missing sum is an error, never fetched anew.
  # (kwok and helm link client-go too: the -X flags make their User-Agent name this Kubernetes
  # version; their own version, and helm version, are theirs.)
  (cd .ci/k8s && CGO_ENABLED=0 nice -n "${K8S_TOOLS_NICE:-10}" go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    sigs.k8s.io/kwok/cmd/kwok helm.sh/helm/v3/cmd/helm) >&2
  mkdir -p "$(dirname "$bin")"
  rm -rf "$bin" && mv "$tmp" "$bin"
  trap - EXIT
  echo "k8s-tools: built in $((SECONDS - start)) s into $bin" >&2
fi
# kwok's behaviour comes from Stage objects: its "fast" ones (a node is Ready when created, a
# scheduled pod Ready at once, a deleted pod gone) and node heartbeats with leases, from its
# module at the same version.
if [ ! -s "$bin/kwok-stages.yaml" ]; then
  kwok_dir=$(cd "$bin" && go mod download -json "sigs.k8s.io/kwok@$kwok_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  stages="$kwok_dir/kustomize/stage"
  for f in "$stages"/node/fast/node-initialize.yaml "$stages"/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$stages"/pod/fast/pod-ready.yaml "$stages"/pod/fast/pod-complete.yaml "$stages"/pod/fast/pod-delete.yaml; do
    [ -s "$f" ] || { echo "k8s-tools: kwok $kwok_version has no $f; check the stage paths" >&2; exit 1; }
    echo "---"; cat "$f"
  done >"$bin/kwok-stages.yaml.tmp"
  mv "$bin/kwok-stages.yaml.tmp" "$bin/kwok-stages.yaml"
fi
echo "$bin"
