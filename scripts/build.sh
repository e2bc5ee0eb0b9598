#!/usr/bin/env bash
# Builds the static release binary of payrails-mtls-proxy. This is the one
# place the release build command lives: the Dockerfile and .ci/run call it.
#
#   scripts/build.sh [VERSION]
#
# VERSION is the first argument, else $VERSION, else `git describe --tags
# --always --dirty`, else "dev"; it is stamped into main.version and shown by
# `payrails-mtls-proxy version`. OUT is the output file (default
# dist/payrails-mtls-proxy under the repository; a relative OUT is taken from
# the current directory). GOOS and GOARCH cross-compile as usual.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3   # go.mod's toolchain line (machines default to GOTOOLCHAIN=local)

out="${OUT:-}"
if [ -n "$out" ] && [ "${out#/}" = "$out" ]; then
  out="$PWD/$out"
fi
cd "$(dirname "$0")/.."
out="${out:-$PWD/dist/payrails-mtls-proxy}"

version="${1:-${VERSION:-}}"
if [ -z "$version" ]; then
  version=$(git describe --tags --always --dirty 2>/dev/null || true)
fi
version="${version:-dev}"
# The version goes inside -ldflags, which splits on spaces and quotes.
if ! [[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9._+~-]*$ ]]; then
  echo "build.sh: version \"$version\" may only hold letters, digits and . _ + ~ - (it is stamped into -ldflags)" >&2
  exit 2
fi

mkdir -p "$(dirname "$out")"
# CGO_ENABLED=0: a static binary for distroless/static and any Linux host.
# -trimpath: no build paths in the binary (reproducible). -s -w: no symbol
# table or DWARF (smaller; panics still print stack traces).
# -pgo: cmd/payrails-mtls-proxy/default.pgo (scripts/pgo.sh makes it) unless PGO=off; Go's default
# -pgo=auto takes that file, named here so the build says it.
pgo="${PGO:-auto}"
CGO_ENABLED=0 go build -trimpath -pgo="$pgo" -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/payrails-mtls-proxy
echo "build.sh: built $out (version $version, $(go env GOOS)/$(go env GOARCH))"
