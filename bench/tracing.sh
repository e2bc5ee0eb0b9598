#!/usr/bin/env bash
# What tracing costs (issue 27): the proxy's CPU per request with tracing off and with every
# request traced (OTLP/HTTP to a real OpenTelemetry Collector, sample ratio 1.0), one binary in
# both arms, side by side in every run (bench/compare.sh --proxy-bins: the "on" arm is the same
# binary started with OTEL_EXPORTER_OTLP_ENDPOINT set); with --base-bin, also the base binary
# (main, say) with tracing off in the same runs, so that "off" can be compared with the code
# before tracing.
#
#   bash bench/tracing.sh [--runs 5] [--scenarios c64,c1] [--duration 5s] [--base-bin BIN] [--proxy-bin BIN]
#
# Pinned as bench/compare.sh is by default: the proxy on one CPU, wrk, the stand-in and the
# collector on the other. The summary gives each arm's CPU ms per 1,000 requests in every run,
# their medians, and the median of the per-run ratios; and the spans the collector accepted per
# measured traced request (2 for a request on a pooled connection: the server span and its send;
# the warm-up's and the checks' requests are traced too, so a little more; fewer means the proxy
# dropped spans). Needs what bench/compare.sh needs, and the collector built by
# `bash .ci/otelcol.sh DIR` ($PAYRAILS_PROXY_OTELCOL_DIR, default
# /var/cache/payrails-mtls-proxy-ci/otelcol). Run it alone on the machine: other load moves the
# figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi

runs=5 scenarios=c64,c1 duration=5s base_bin="" proxy_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --base-bin) base_bin=$(realpath "$2"); shift 2 ;;
    --proxy-bin) proxy_bin=$(realpath "$2"); shift 2 ;;
    *) echo "bench/tracing.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done

tmp=$(mktemp -d)
col_pid=""
cleanup() {
  if [ -n "$col_pid" ]; then kill "$col_pid" 2>/dev/null || true; wait "$col_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ -z "$proxy_bin" ]; then
  proxy_bin="$tmp/payrails-mtls-proxy"
  OUT="$proxy_bin" bash scripts/build.sh >&2
fi

# The collector, where .ci/otelcol.sh builds it (as the interop test finds it).
manifest=.ci/otelcol-builder.yaml
key="$(sed -n 's/^  version: //p' "$manifest")-$(sha256sum "$manifest" | cut -c1-12)"
otelcol="${PAYRAILS_PROXY_OTELCOL_DIR:-/var/cache/payrails-mtls-proxy-ci/otelcol}/$key/otelcol-payrails"
if [ ! -x "$otelcol" ]; then
  echo "bench/tracing.sh: no collector at $otelcol; build it with bash .ci/otelcol.sh DIR" >&2
  exit 1
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
otlp_port=$(free_port)
metrics_port=$(free_port)
cat > "$tmp/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$otlp_port
exporters:
  file:
    path: /dev/null
service:
  telemetry:
    logs: {level: warn}
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus: {host: 127.0.0.1, port: $metrics_port}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
YAML
pin=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin="taskset -c 0" # with wrk and the stand-in, off the proxy's CPU (the pinned shape gives it the last)
fi
$pin "$otelcol" --config "file:$tmp/otelcol.yaml" >"$tmp/otelcol.log" 2>&1 &
col_pid=$!
accepted() {
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" |
    awk '/^otelcol_receiver_accepted_spans(_total)?[{ ]/ { s += $NF } END { printf "%d\n", s }'
}
for _ in $(seq 100); do
  if accepted >/dev/null 2>&1; then break; fi
  sleep 0.1
done
accepted >/dev/null || { echo "bench/tracing.sh: the collector did not start:" >&2; cat "$tmp/otelcol.log" >&2; exit 1; }

# The "on" arm: the same binary, every request traced to the collector.
{
  echo '#!/bin/sh'
  echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$otlp_port OTEL_TRACES_SAMPLER=parentbased_traceidratio \\"
  echo "  OTEL_TRACES_SAMPLER_ARG=1.0 exec \"$proxy_bin\" \"\$@\""
} > "$tmp/traced"
chmod +x "$tmp/traced"
bins="off=$proxy_bin,on=$tmp/traced"
if [ -n "$base_bin" ]; then bins="base=$base_bin,$bins"; fi

before=$(accepted)
bash bench/compare.sh --proxy-bins "$bins" --peers proxy-base --scenarios "$scenarios" --runs "$runs" \
  --duration "$duration" --json "$tmp/out.json"
spans=$(( $(accepted) - before ))
python3 bench/tracing_summary.py "$tmp/out.json" "$duration" "$spans"
