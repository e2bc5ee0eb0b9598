#!/usr/bin/env bash
# Side-by-side benchmark of payrails-mtls-proxy against nginx, HAProxy,
# stunnel4 and Caddy (see bench/README.md). Builds the runner and hands it
# every argument, e.g.:
#
#   bash bench/compare.sh                         # everything, pinned: about 10 minutes on 2 cores
#   bash bench/compare.sh --peer-cpus none        # unpinned: peers, wrk and the stand-in share every CPU
#   bash bench/compare.sh --scenarios c1,wan --runs 1 --json /tmp/bench.json
#
# Needs Go, and from Debian: apt-get install -y wrk nginx-light haproxy stunnel4 caddy
set -euo pipefail

cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
  PATH="$PATH:/usr/local/go/bin"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# bench/compare is a module of its own (its go.mod keeps the runner out of the sidecar's).
go -C bench/compare build -o "$tmp/compare" .
"$tmp/compare" --repo "$PWD" "$@"
