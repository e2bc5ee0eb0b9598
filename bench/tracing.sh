#!/usr/bin/env bash
# What tracing costs (issue 27): the proxy's CPU per request with tracing off and with every
# request traced (OTLP/HTTP to a real OpenTelemetry Collector, sample ratio 1.0), in alternating
# runs of one binary; with --base-bin, also the base binary (main, say) with tracing off in the
# same rounds, so that "off" can be compared with the code before tracing.
#
#   bash bench/tracing.sh [--rounds 3] [--scenarios c64,c1] [--duration 5s] [--base-bin BIN] [--proxy-bin BIN]
#
# Each round runs, in this order, base-off (with --base-bin), off and on, each one
# `bench/compare.sh --peers proxy-base --runs 1` (pinned: the proxy on one CPU, wrk, the stand-in
# and the collector on the other); the summary gives each arm's CPU ms per 1,000 requests per
# run, their medians and the ratios, and for the traced runs the spans the collector accepted per
# request (2 for a request on a pooled connection: the server span and its send; fewer means the
# proxy dropped spans, which it counts). Needs what bench/compare.sh needs, and the collector
# built by `bash .ci/otelcol.sh DIR` ($PAYRAILS_PROXY_OTELCOL_DIR, default
# /var/cache/payrails-mtls-proxy-ci/otelcol). Run it alone on the machine (flock
# /work/.heavy.lock or the like): other load moves the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi

rounds=3 scenarios=c64,c1 duration=5s base_bin="" proxy_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --base-bin) base_bin=$2; shift 2 ;;
    --proxy-bin) proxy_bin=$2; shift 2 ;;
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
  OUT="$proxy_bin" bash scripts/build.sh >/dev/null
fi

# The collector, as the interop test finds it.
manifest=.ci/otelcol-builder.yaml
key="$(sed -n 's/^  version: //p' "$manifest")-$(sha256sum "$manifest" | cut -c1-12)"
otelcol="${PAYRAILS_PROXY_OTELCOL_DIR:-/var/cache/payrails-mtls-proxy-ci/otelcol}/$key/otelcol-payrails"
if [ ! -x "$otelcol" ]; then
  echo "bench/tracing.sh: no collector at $otelcol; build it with bash .ci/otelcol.sh DIR" >&2
  exit 1
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
otlp_port=$(free_port) metrics_port=$(free_port)
cat > "$tmp/otelcol.yaml" <<EOF
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
EOF
pin=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin="taskset -c 0"; fi # with wrk and the stand-in, off the proxy's CPU
$pin "$otelcol" --config "file:$tmp/otelcol.yaml" >"$tmp/otelcol.log" 2>&1 &
col_pid=$!
for _ in $(seq 100); do
  if curl -fsS "http://127.0.0.1:$metrics_port/metrics" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
accepted() {
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" |
    awk '/^otelcol_receiver_accepted_spans(_total)?[{ ]/ { s += $NF } END { printf "%d\n", s }'
}

run() { # run ARM BIN [ENV...]: one compare run, its JSON in $tmp/ARM-ROUND.json
  local arm=$1 bin=$2; shift 2
  env "$@" bash bench/compare.sh --proxy-bin "$bin" --peers proxy-base --scenarios "$scenarios" --runs 1 \
    --duration "$duration" --json "$tmp/$arm-$round.json" >"$tmp/$arm-$round.txt" 2>&1 ||
    { echo "bench/tracing.sh: the $arm run failed:"; cat "$tmp/$arm-$round.txt"; exit 1; } >&2
}

for round in $(seq "$rounds"); do
  if [ -n "$base_bin" ]; then run base-off "$base_bin"; fi
  run off "$proxy_bin"
  before=$(accepted)
  run on "$proxy_bin" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp_port" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=1.0
  echo "$(( $(accepted) - before ))" >"$tmp/on-$round.spans"
  echo "round $round of $rounds done" >&2
done

python3 - "$tmp" "$rounds" "$duration" "$base_bin" <<'EOF'
import json, statistics, sys
tmp, rounds, duration, base = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
arms = (["base-off"] if base else []) + ["off", "on"]
cpu, reqs = {}, {}
for arm in arms:
    for r in range(1, rounds + 1):
        rep = json.load(open(f"{tmp}/{arm}-{r}.json"))
        for row in rep["rows"]:
            if row.get("error"):
                sys.exit(f"{arm} round {r} {row['scenario']}: {row['error']}")
            f = row["runs"][0]
            cpu.setdefault((row["scenario"], arm), []).append(f["cpu_ms_per_1k_req"])
            reqs.setdefault((row["scenario"], arm), []).append(f["req_per_s"])
secs = float(duration.rstrip("s"))
print(f"CPU ms per 1,000 requests of the proxy (bench/compare.sh proxy-base, pinned, {rounds} alternating rounds of {duration}):")
for sc in sorted({k[0] for k in cpu}):
    for arm in arms:
        runs = cpu[(sc, arm)]
        print(f"  {sc:5} {arm:9} runs {' '.join(f'{x:6.1f}' for x in runs)}   median {statistics.median(runs):6.1f}"
              f"   req/s median {statistics.median(reqs[(sc, arm)]):8.0f}")
    off, on = statistics.median(cpu[(sc, "off")]), statistics.median(cpu[(sc, "on")])
    line = f"  {sc:5} on/off {on / off:.3f}"
    if base:
        line += f"   off/base-off {off / statistics.median(cpu[(sc, 'base-off')]):.3f}"
    print(line)
spans = [int(open(f"{tmp}/on-{r}.spans").read()) for r in range(1, rounds + 1)]
sent = [sum(reqs[(sc, "on")][r] * secs for sc in {k[0] for k in reqs}) for r in range(rounds)]
print("spans the collector accepted per traced request, by round (warm-up and checks included): " +
      " ".join(f"{s / n:.2f}" for s, n in zip(spans, sent)))
EOF
