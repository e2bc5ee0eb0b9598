// Package deploytest holds only tests: it proves the deployment files under
// deploy/ with the real tools and libraries they are meant for. The Helm
// chart is rendered by helm and every object decoded strictly into the
// Kubernetes API types; its config.yaml is loaded by the config package; the
// Prometheus rules are checked and unit-tested by promtool; every PromQL
// expression of the rules and of the Grafana dashboard is parsed by
// Prometheus' own parser, and each metric it names must be one that a
// running payrails-mtls-proxy exports.
//
// It lives apart from cmd/payrails-mtls-proxy so that the Kubernetes and
// Prometheus libraries, which only these tests need, stay out of the
// binary's own tests.
package deploytest
