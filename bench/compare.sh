#!/usr/bin/env bash
# Side-by-side benchmark of payrails-mtls-proxy against nginx, HAProxy and
# stunnel4 (see bench/README.md). Builds the runner and hands it every
# argument, e.g.:
#
#   bash bench/compare.sh                         # everything, about 7 minutes on 2 cores
#   bash bench/compare.sh --scenarios c1,wan --runs 1 --json /tmp/bench.json
#
# Needs Go, and from Debian: apt-get install -y wrk nginx-light haproxy stunnel4
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="$PATH:/usr/local/go/bin"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/compare" ./bench/compare
"$tmp/compare" --repo "$PWD" "$@"
