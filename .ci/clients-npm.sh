#!/usr/bin/env bash
# Installs the client matrix's npm packages (cmd/payrails-mtls-proxy/clientmatrix), at pinned versions,
# into DIR/node_modules: outside the clone, so that a second run finds them. axios 1 and 0.27 are
# installed side by side under the aliases axios1 and axios0.
# Usage: bash .ci/clients-npm.sh DIR   (the tests look in $PAYRAILS_PROXY_NPM_DIR, by default
#        /var/cache/payrails-mtls-proxy-ci/npm)
set -euo pipefail
dir=${1:?usage: bash .ci/clients-npm.sh DIR}
want="undici@7.30.3 axios1@npm:axios@1.21.1 axios0@npm:axios@0.27.2"
mkdir -p "$dir"
if [ "$(cat "$dir/.installed" 2>/dev/null)" = "$want" ]; then
  echo "npm packages for the client matrix: $want (already in $dir)"
  exit 0
fi
cd "$dir"
rm -rf node_modules package-lock.json .installed
printf '{"name": "payrails-mtls-proxy-client-matrix", "private": true}\n' > package.json
# shellcheck disable=SC2086 # $want is a list of packages
npm install --no-audit --no-fund --no-package-lock --save-exact $want
echo "$want" > .installed
echo "npm packages for the client matrix: $want (installed in $dir)"
