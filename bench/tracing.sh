#!/usr/bin/env bash
# What tracing costs (issue 27): the proxy's CPU per request with tracing off and with every
# request traced (OTLP/HTTP to bench/otlpsink, sample ratio 1.0), one binary in
# both arms, side by side in every run (bench/compare.sh --proxy-bins: the "on" arm is the same
# binary started with OTEL_EXPORTER_OTLP_ENDPOINT set); with --base-bin, also the base binary
# (main, say) with tracing off in the same runs, so that "off" can be compared with the code
# before tracing; with --base-traced too, the base binary traced ("baseon"), so that two
# binaries' tracing can be compared run by run (on/baseon), which moves less than on/off.
#
#   bash bench/tracing.sh [--runs 5] [--scenarios c64,c1] [--duration 5s] [--base-bin BIN [--base-traced]]
#                         [--proxy-bin BIN] [--cpuprofile DIR] [--sink-cpu 0|1]
#
# --cpuprofile DIR keeps a CPU profile of every measured run of each arm in DIR (bench/compare.sh's
# flag: NNN-proxy-base@ARM.pprof; `go tool pprof -proto DIR/*@on.pprof` merges an arm's).
#
# Pinned as bench/compare.sh is by default: the proxy on one CPU, wrk, the stand-in and the
# receiver on the other. --sink-cpu 1 puts the receiver on the proxy's CPU instead: then the load
# generator and the stand-in are undisturbed between the arms, and what the receiver takes is
# the proxy's time, never counted as its CPU (on two cores neither placement is production's,
# where the Collector runs elsewhere; docs/performance.md has both). The summary gives each arm's CPU ms per 1,000 requests in every run,
# their medians, and the median of the per-run ratios; and the spans the receiver accepted per
# measured traced request (2 for a request on a pooled connection: the server span and its send;
# the warm-up's and the checks' requests are traced too, so a little more; fewer means the proxy
# dropped spans). Needs what bench/compare.sh needs. Run it alone on the machine: other load
# moves the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi

runs=5 scenarios=c64,c1 duration=5s base_bin="" base_traced="" proxy_bin="" profile=() sink_cpu=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --base-bin) base_bin=$(realpath "$2"); shift 2 ;;
    --base-traced) base_traced=1; shift ;;
    --proxy-bin) proxy_bin=$(realpath "$2"); shift 2 ;;
    --cpuprofile) mkdir -p "$2"; profile=(--cpuprofile "$(realpath "$2")"); shift 2 ;;
    --sink-cpu) sink_cpu=$2; shift 2 ;;
    *) echo "bench/tracing.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
if [ -n "$base_traced" ] && [ -z "$base_bin" ]; then
  echo "bench/tracing.sh: --base-traced traces the --base-bin binary; give --base-bin BIN" >&2
  exit 2
fi

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

# The receiver: bench/otlpsink, which counts the spans and does nothing else. A real
# Collector (.ci/otelcol.sh) shares the other CPU with wrk and the stand-in and slows them
# enough to move the proxy's CPU per request by itself (docs/performance.md); the Collector
# is where correctness is checked (cmd's TestTracingCollector), not here.
go build -o "$tmp/otlpsink" ./bench/otlpsink
pin=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  case "$sink_cpu" in
    0) pin="taskset -c 0" ;; # with wrk and the stand-in, off the proxy's CPU (the pinned shape gives it the last)
    1) pin="taskset -c $(( $(nproc) - 1 ))" ;; # on the proxy's CPU
    *) echo "bench/tracing.sh: --sink-cpu is 0 (the load generator's CPU) or 1 (the proxy's), not $sink_cpu" >&2; exit 2 ;;
  esac
fi
$pin "$tmp/otlpsink" -listen 127.0.0.1:0 >"$tmp/otlpsink.out" 2>&1 &
col_pid=$!
for _ in $(seq 100); do
  if [ -s "$tmp/otlpsink.out" ]; then break; fi
  sleep 0.1
done
otlp_addr=$(head -1 "$tmp/otlpsink.out")
accepted() { curl -fsS "http://$otlp_addr/spans" | awk '{ print $1 }'; }
accepted >/dev/null || { echo "bench/tracing.sh: bench/otlpsink did not start:" >&2; cat "$tmp/otlpsink.out" >&2; exit 1; }

# The "on" arm: the same binary, every request traced to the receiver.
traced() { # BIN OUT: a script that starts BIN traced
  {
    echo '#!/bin/sh'
    echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://$otlp_addr OTEL_TRACES_SAMPLER=parentbased_traceidratio \\"
    echo "  OTEL_TRACES_SAMPLER_ARG=1.0 exec \"$1\" \"\$@\""
  } > "$2"
  chmod +x "$2"
}
traced "$proxy_bin" "$tmp/traced"
bins="off=$proxy_bin,on=$tmp/traced"
if [ -n "$base_bin" ] && [ -n "$base_traced" ]; then
  traced "$base_bin" "$tmp/base-traced"
  bins="base=$base_bin,baseon=$tmp/base-traced,$bins"
elif [ -n "$base_bin" ]; then
  bins="base=$base_bin,$bins"
fi

before=$(accepted)
bash bench/compare.sh --proxy-bins "$bins" --peers proxy-base --scenarios "$scenarios" --runs "$runs" \
  --duration "$duration" --json "$tmp/out.json" "${profile[@]}"
spans=$(( $(accepted) - before ))
python3 bench/tracing_summary.py "$tmp/out.json" "$duration" "$spans"
