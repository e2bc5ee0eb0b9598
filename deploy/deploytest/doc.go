// Package deploytest holds only tests: it proves the deployment files under
// deploy/ with the real tools and libraries they are meant for. The Helm
// chart is rendered by helm and every object decoded strictly into the
// Kubernetes API types; its config.yaml is loaded by the config package; the
// Prometheus rules are checked and unit-tested by promtool; every PromQL
// expression of the rules and of the Grafana dashboard is parsed by
// Prometheus' own parser, and each metric it names must be one that a
// running payrails-mtls-proxy exports.
//
// It is a Go module of its own (go.mod beside this file, run with
// `go -C deploy/deploytest test ./...`), so that the Kubernetes and
// Prometheus libraries, which only these tests need, stay out of the
// sidecar's go.mod and go.sum. It imports the sidecar's packages from this
// checkout through a replace directive.
package deploytest
