#!/usr/bin/env bash
# govulncheck against a Go vulnerability database built offline, failing on any vulnerability
# the code can reach:
#
#   bash .ci/vulncheck.sh [--tags TAGS]... [--binary FILE]
#   bash .ci/vulncheck.sh --prepare     # only build the tools and the database (cached)
#
# Scans the sidecar's module (./..., default build tags), then the binary's package once per
# build flavour: the default one always, and one more per --tags (comma-separated build tags,
# e.g. --tags pkcs11 for a flavour built with -tags pkcs11), and with --binary also the built
# binary itself (govulncheck -mode binary: what was actually linked).
#
# The database: golang.org/x/vulndb (the Go vulnerability database's own repository, from the
# module proxy at the pinned version below) holds every report as OSV JSON in data/osv; its
# indexdb command builds the database govulncheck reads (-db file://...). govulncheck
# (golang.org/x/vuln) is pinned too. Both tools and the database are cached outside the
# clone, keyed by version: PAYRAILS_PROXY_CI_CACHE (default /var/cache/payrails-mtls-proxy-ci).
# To take newer reports, raise vulndb_version (go list -m -versions golang.org/x/vulndb lists
# none: take the pseudo-version `go list -m golang.org/x/vulndb@master` prints).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN="${GOTOOLCHAIN:-go1.27.3}"
export PATH="/usr/local/go/bin:$PATH"

vuln_version=v1.9.0                                     # golang.org/x/vuln (govulncheck)
vulndb_version=v0.0.0-20261105234957-e22db6528018       # golang.org/x/vulndb (reports up to 2026-11-05)

flavours=("")   # build tags per flavour; "" is the default build
binary=""
prepare=false
while [ $# -gt 0 ]; do
  case "$1" in
    --tags) flavours+=("${2:?--tags needs a value such as pkcs11}"); shift 2 ;;
    --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
    --prepare) prepare=true; shift ;;
    *) echo "vulncheck.sh: unknown argument $1; use --tags TAGS or --binary FILE" >&2; exit 2 ;;
  esac
done

cache="${PAYRAILS_PROXY_CI_CACHE:-/var/cache/payrails-mtls-proxy-ci}/vuln"
bin="$cache/bin-$vuln_version-$(go env GOVERSION)"
db="$cache/db-$vulndb_version"

if [ ! -x "$bin/govulncheck" ] || [ ! -x "$bin/indexdb" ]; then
  echo "vulncheck: building govulncheck $vuln_version and indexdb (golang.org/x/vulndb $vulndb_version)" >&2
  mkdir -p "$bin"
  (cd "$cache" && GOBIN="$bin" go install "golang.org/x/vuln/cmd/govulncheck@$vuln_version" \
    && GOBIN="$bin" go install "golang.org/x/vulndb/cmd/indexdb@$vulndb_version")
fi
if [ ! -f "$db/index/db.json" ]; then
  echo "vulncheck: building the database from golang.org/x/vulndb@$vulndb_version's data/osv" >&2
  src=$(cd "$cache" && go mod download -json "golang.org/x/vulndb@$vulndb_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  if [ ! -d "$src/data/osv" ]; then
    echo "vulncheck: golang.org/x/vulndb@$vulndb_version has no data/osv (at '$src'); check the version" >&2; exit 1
  fi
  rm -rf "$db.tmp" && "$bin/indexdb" -vulns "$src/data/osv" -out "$db.tmp" && mv "$db.tmp" "$db"
fi
if [ "$prepare" = true ]; then
  exit 0
fi
echo "vulncheck: govulncheck $vuln_version, database golang.org/x/vulndb@$vulndb_version ($(ls "$db/ID" | grep -c "\.json$") reports), $(go env GOVERSION)"

failed=0
scan() {   # scan DESCRIPTION govulncheck-args...
  echo "vulncheck: $1"
  local rc=0
  "$bin/govulncheck" -db "file://$db" "${@:2}" || rc=$?
  case $rc in
    0) ;;
    3) failed=1 ;;   # govulncheck: the code reaches a known vulnerability
    *) echo "vulncheck: govulncheck failed (exit $rc) on $1" >&2; exit 1 ;;
  esac
}
scan "the module (./..., default build)" ./...
for tags in "${flavours[@]}"; do
  scan "the binary's package, build tags '${tags:-default}'" ${tags:+-tags "$tags"} ./cmd/payrails-mtls-proxy
done
if [ -n "$binary" ]; then
  scan "the binary $binary" -mode binary "$binary"
fi
if [ "$failed" != 0 ]; then
  echo "FAIL: govulncheck found vulnerabilities the code reaches (above). Standard library: raise the" >&2
  echo "toolchain line in go.mod and every GOTOOLCHAIN=... (scripts/build.sh, .ci/, README, the Dockerfile's" >&2
  echo "GO_IMAGE) to the release that fixes them; a module: go get MODULE@FIXED-VERSION && go mod tidy." >&2
  exit 1
fi
echo "vulncheck: no reachable vulnerability"
