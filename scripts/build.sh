#!/usr/bin/env bash
# Builds the release binary of payrails-mtls-proxy. This is the one place
# the release build command lives: the Dockerfile and .ci/run call it.
#
#   scripts/build.sh [--pkcs11] [VERSION]
#
# Two flavours. The default is static (CGO_ENABLED=0), for distroless/static
# and any Linux host; it has no PKCS#11 and refuses key_uri at start.
# --pkcs11 (or FLAVOUR=pkcs11) builds with -tags pkcs11 and cgo, dynamically
# linked against glibc (PKCS#11 libraries are shared objects loaded with
# dlopen, which a static binary cannot do): it needs gcc and runs on a glibc
# base (the -pkcs11 image); its default OUT is dist/payrails-mtls-proxy-pkcs11.
#
# VERSION is the first argument, else $VERSION, else `git describe --tags
# --always --dirty`, else "dev"; it is stamped into main.version and shown by
# `payrails-mtls-proxy version`. OUT is the output file (default
# dist/payrails-mtls-proxy under the repository; a relative OUT is taken from
# the current directory). GOOS and GOARCH cross-compile as usual.
set -euo pipefail
export GOTOOLCHAIN=go1.27.3   # go.mod's toolchain line (machines default to GOTOOLCHAIN=local)

flavour="${FLAVOUR:-static}"
if [ "${1:-}" = "--pkcs11" ]; then
  flavour=pkcs11
  shift
fi
case "$flavour" in
  static | pkcs11) ;;
  *) echo "build.sh: FLAVOUR=\"$flavour\" is neither static nor pkcs11" >&2; exit 2 ;;
esac

out="${OUT:-}"
if [ -n "$out" ] && [ "${out#/}" = "$out" ]; then
  out="$PWD/$out"
fi
cd "$(dirname "$0")/.."
default_out="$PWD/dist/payrails-mtls-proxy"
[ "$flavour" = pkcs11 ] && default_out="$default_out-pkcs11"
out="${out:-$default_out}"

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
# -trimpath: no build paths in the binary (reproducible). -buildvcs=false: the
# same binary from a git checkout or from the image's build context, which has
# no .git, whatever GOFLAGS the machine has. -s -w: no symbol
# table or DWARF (smaller; panics still print stack traces).
# -pgo: cmd/payrails-mtls-proxy/default.pgo (scripts/pgo.sh makes it) unless PGO=off; Go's default
# -pgo=auto takes that file, named here so the build says it.
pgo="${PGO:-auto}"
if [ "$flavour" = pkcs11 ]; then
  if ! command -v "$(go env CC)" >/dev/null 2>&1; then
    echo "build.sh: --pkcs11 needs a C compiler for cgo ($(go env CC)); install it: apt-get install -y gcc" >&2
    exit 2
  fi
  CGO_ENABLED=1 go build -tags pkcs11 -trimpath -buildvcs=false -pgo="$pgo" -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/payrails-mtls-proxy
else
  CGO_ENABLED=0 go build -trimpath -buildvcs=false -pgo="$pgo" -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/payrails-mtls-proxy
fi
echo "build.sh: built $out ($flavour, version $version, $(go env GOOS)/$(go env GOARCH))"
