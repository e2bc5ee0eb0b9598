#!/usr/bin/env bash
# Builds the OpenTelemetry Collector of the tracing interop test (cmd/payrails-mtls-proxy/
# otelcol_test.go) with the collector's builder, from .ci/otelcol-builder.yaml, into
# DIR/<version>-<hash of the manifest>/otelcol-payrails: outside the clone, so that a second
# run finds it (a build takes a few minutes). The test computes the same folder name.
# Usage: bash .ci/otelcol.sh DIR   (the test looks in $PAYRAILS_PROXY_OTELCOL_DIR, by default
#        /var/cache/payrails-mtls-proxy-ci/otelcol)
set -euo pipefail
# The compiler with fewer collections: about a quarter less CPU on a cold build (.ci/run's GOGC note).
export GOGC="${GOGC:-400}"
dir=${1:?usage: bash .ci/otelcol.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/otelcol-builder.yaml"
version=$(sed -n 's/^  version: //p' "$manifest")
key="$version-$(sha256sum "$manifest" | cut -c1-12)"
out="$dir/$key"
if [ -x "$out/otelcol-payrails" ]; then
  echo "OpenTelemetry Collector $version: $out/otelcol-payrails (already built)"
  exit 0
fi
mkdir -p "$dir/bin"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
GOBIN="$dir/bin" go install "go.opentelemetry.io/collector/cmd/builder@v$version"
sed "s|OUTPUT_PATH|$out.tmp/build|" "$manifest" > "$out.tmp/builder.yaml"
# CGO off: a static binary, as the proxy's; the builder runs `go build` in the output folder.
CGO_ENABLED=0 "$dir/bin/builder" --config "$out.tmp/builder.yaml"
mv "$out.tmp/build/otelcol-payrails" "$out.tmp/otelcol-payrails"
rm -rf "$out.tmp/build"
mv "$out.tmp" "$out"
echo "OpenTelemetry Collector $version: $out/otelcol-payrails (built)"
