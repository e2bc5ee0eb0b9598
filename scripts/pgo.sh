#!/usr/bin/env bash
# Makes cmd/payrails-mtls-proxy/default.pgo, the CPU profile the release build uses for
# profile-guided optimisation (Go builds the main package with -pgo=auto, which takes that
# file; scripts/build.sh names it), from the bench's own workload: keep-alive (c1, c64),
# a connection per request (close) and 1 MiB answers (big), each against an HTTP/1.1 and an
# HTTP/2 upstream, in base-URL and forward mode, and a share of HTTPS_PROXY through
# connect: mitm. The profiled binary is built with -pgo=off, so that the profile describes
# the source rather than a previous profile's inlining.
#
#   bash scripts/pgo.sh            # about 6 minutes on 2 cores; needs what bench/compare.sh needs
#   RUNS=2 DURATION=10s bash scripts/pgo.sh
#
# Run it on a quiet machine after changes to the request path, and commit the result.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

OUT="$work/payrails-mtls-proxy" PGO=off bash scripts/build.sh pgo-profile
bash bench/compare.sh --proxy-bin "$work/payrails-mtls-proxy" --peers proxy-base,proxy-fwd \
  --scenarios c1,c64,close,big,c1-h2,c64-h2,close-h2,big-h2,mitm \
  --runs "${RUNS:-1}" --duration "${DURATION:-8s}" --cpuprofile "$work/profiles" >"$work/bench.txt"
n=$(ls "$work/profiles"/*.pprof | wc -l)
go tool pprof -proto "$work/profiles"/*.pprof >"$work/default.pgo"
mv "$work/default.pgo" "$repo/cmd/payrails-mtls-proxy/default.pgo"
echo "pgo.sh: merged $n profiles into cmd/payrails-mtls-proxy/default.pgo ($(wc -c <"$repo/cmd/payrails-mtls-proxy/default.pgo") bytes)"
