#!/usr/bin/env bash
# Builds the image from the Dockerfile with podman, without a registry, and loads it into the
# local podman storage as localhost/payrails-mtls-proxy:dev (Docker format, so that podman
# keeps the HEALTHCHECK; OCI images have none).
#
#   scripts/image.sh [--version V] [--tag NAME] [--bases local|public] [--bases-only]
#
# The Dockerfile's base images are build arguments whose defaults are the public images
# (GO_IMAGE golang:1.27.3-bookworm, BASE_IMAGE gcr.io/distroless/static-debian12:nonroot).
# --bases public builds with those (a machine that can pull them). --bases local, the
# default, makes local equivalents first and passes them in, so nothing is pulled:
#   localhost/payrails-mtls-proxy-base/debian:bookworm   Debian bookworm (debootstrap, minbase,
#                                                        with ca-certificates and curl)
#   localhost/payrails-mtls-proxy-base/golang:1.27.3     that, plus the Go toolchain go.mod pins
#                                                        (the go command's own copy, from the
#                                                        module proxy)
#   localhost/payrails-mtls-proxy-base/static:nonroot    like distroless/static: CA certificates,
#                                                        time zones, /etc/passwd and /etc/group
#                                                        with nonroot (65532), no shell, no libc
# Local bases need root (debootstrap) and a Debian mirror (DEBIAN_MIRROR, default
# http://deb.debian.org/debian).
#
# Modules: the script downloads them on this machine (go mod download, checked against
# go.sum, into its cache) and mounts that module cache into the build, which then runs with
# --network none: the Dockerfile's `go mod download` and build find every module there. This
# keeps the build offline and independent of the machine's network set-up (a build container
# does not trust a TLS-intercepting egress proxy's CA, as CI's sandbox has), and it is quick.
#
# --bases-only makes the local base images and stops (CI does that early, in the background).
#
# Needs podman (Debian: apt-get install podman runc debootstrap). Caches the Debian root file
# system and the module cache in IMAGE_CACHE_DIR (default ~/.cache/payrails-mtls-proxy/image);
# the build uses this machine's Go build cache (go env GOCACHE), so what scripts/build.sh
# compiled here is not compiled again (-trimpath builds share it across paths).
# PODMAN_BUILD_OPTS adds options to podman build (e.g. --ulimit nofile=1024:1024 where the
# machine needs it; CI's .ci/podman-setup.sh puts those in containers.conf instead).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=go1.27.3   # go.mod's toolchain line (machines default to GOTOOLCHAIN=local)
export PATH="$PATH:/usr/local/go/bin"

version=""
tag=""
bases=local
bases_only=false
# The image flavour: what the build is given and what it is called. One today ("default":
# static binary on the distroless-like base); a glibc flavour adds its case below.
flavour=default
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --bases) bases="${2:?--bases needs local or public}"; shift 2 ;;
    --bases-only) bases_only=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see scripts/image.sh --help)" >&2; exit 2 ;;
  esac
done
case "$bases" in local|public) ;; *) echo "image.sh: --bases $bases: use local or public" >&2; exit 2 ;; esac
if [ -z "$version" ]; then
  version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
if ! command -v podman >/dev/null; then
  echo "image.sh: podman is not installed; on Debian: apt-get install podman runc debootstrap" >&2
  exit 1
fi

toolchain=$(sed -n 's/^toolchain go//p' go.mod)   # 1.27.3
cache="${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/payrails-mtls-proxy/image}"
mkdir -p "$cache"
local_debian=localhost/payrails-mtls-proxy-base/debian:bookworm
local_golang=localhost/payrails-mtls-proxy-base/golang:$toolchain
local_static=localhost/payrails-mtls-proxy-base/static:nonroot
build_args=()
case "$flavour" in
  default)
    tag="${tag:-localhost/payrails-mtls-proxy:dev}"
    local_base=$local_static
    ;;
esac

# debian_rootfs prints a tarball of a Debian bookworm root file system, made once.
debian_rootfs() {
  local tarball="$cache/debian-bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "image.sh: making the local base images needs root (debootstrap); run as root, or use --bases public" >&2
      exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
      echo "image.sh: debootstrap is not installed; on Debian: apt-get install debootstrap" >&2
      exit 1
    fi
    local root="$cache/rootfs.tmp"
    rm -rf "$root"
    echo "image.sh: debootstrap bookworm (minbase, ca-certificates, curl) from ${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
    debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$root" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 || {
      echo "image.sh: debootstrap failed; the end of $cache/debootstrap.log:" >&2; tail -5 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  echo "$tarball"
}

# make_local_bases imports the three local base images that are not in podman's storage yet.
make_local_bases() {
  if ! podman image exists "$local_debian"; then
    podman import --change 'CMD ["bash"]' "$(debian_rootfs)" "$local_debian" >/dev/null
    echo "image.sh: made $local_debian" >&2
  fi
  if ! podman image exists "$local_golang"; then
    # The Go toolchain go.mod pins, as the go command fetched it (golang.org/toolchain).
    local goroot
    goroot=$(go env GOROOT)
    if [ "$(go env GOVERSION)" != "go$toolchain" ]; then
      echo "image.sh: go env GOVERSION is $(go env GOVERSION), want go$toolchain (GOTOOLCHAIN)" >&2; exit 1
    fi
    local dir="$cache/golang.tmp"
    rm -rf "$dir" && mkdir -p "$dir/usr/local"
    cp -a "$goroot" "$dir/usr/local/go" && chmod -R u+w "$dir/usr/local/go"
    mkdir -p "$dir/go/bin" "$dir/go/src" && chmod -R 1777 "$dir/go"
    # As the official golang image: GOTOOLCHAIN=local, GOPATH=/go, Go first on PATH.
    cat >"$dir/Containerfile" <<EOF
FROM $local_debian
ENV GOLANG_VERSION=$toolchain GOTOOLCHAIN=local GOPATH=/go \\
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY usr/local/go /usr/local/go
COPY go /go
WORKDIR /go
EOF
    podman build --format docker --network none -f "$dir/Containerfile" -t "$local_golang" "$dir" >/dev/null
    rm -rf "$dir"
    echo "image.sh: made $local_golang" >&2
  fi
  if ! podman image exists "$local_static"; then
    # What distroless/static-debian12:nonroot holds: CA certificates, time zones, passwd and
    # group with root, nobody and nonroot (65532), /tmp, nonroot's home; nothing to run.
    local dir="$cache/static.tmp" src="$cache/debian.tmp"
    rm -rf "$dir" "$src" && mkdir -p "$dir/etc/ssl/certs" "$dir/usr/share" "$dir/tmp" "$dir/home/nonroot" "$dir/root" "$src"
    tar -C "$src" -xf "$(debian_rootfs)" ./etc/ssl/certs/ca-certificates.crt ./usr/share/zoneinfo ./etc/os-release ./usr/lib/os-release
    cp "$src/etc/ssl/certs/ca-certificates.crt" "$dir/etc/ssl/certs/"
    cp -a "$src/usr/share/zoneinfo" "$dir/usr/share/"
    cp -L "$src/etc/os-release" "$dir/etc/os-release"
    rm -rf "$src"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
      'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$dir/etc/group"
    printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
    chmod 1777 "$dir/tmp" && chmod 700 "$dir/root" "$dir/home/nonroot"
    tar --numeric-owner --owner=0 --group=0 --exclude=./home/nonroot -C "$dir" -cf "$dir.tar" .
    tar --numeric-owner --owner=65532 --group=65532 -C "$dir" -rf "$dir.tar" ./home/nonroot
    podman import --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' "$dir.tar" "$local_static" >/dev/null
    rm -rf "$dir" "$dir.tar"
    echo "image.sh: made $local_static" >&2
  fi
}

if [ "$bases" = local ]; then
  make_local_bases
  build_args+=(--build-arg "GO_IMAGE=$local_golang" --build-arg "BASE_IMAGE=$local_base")
fi
if [ "$bases_only" = true ]; then
  exit 0
fi
gocache=$(go env GOCACHE)
mkdir -p "$gocache" "$cache/gomod"
echo "image.sh: go mod download (into $cache/gomod, mounted into the build)" >&2
GOMODCACHE="$cache/gomod" GOFLAGS=-modcacherw go mod download
start=$SECONDS
echo "image.sh: podman build $tag (version $version, $bases base images)" >&2
# /go/pkg/mod: the module cache (GOPATH=/go in the golang images); /root/.cache/go-build: this
# machine's Go build cache. TARGETOS and TARGETARCH: podman sets them only with --platform.
# shellcheck disable=SC2086 # PODMAN_BUILD_OPTS is a list of options
podman build --format docker --network none ${PODMAN_BUILD_OPTS:-} \
  -v "$cache/gomod:/go/pkg/mod" -v "$gocache:/root/.cache/go-build" \
  --build-arg "TARGETOS=$(go env GOOS)" --build-arg "TARGETARCH=$(go env GOARCH)" \
  --build-arg "VERSION=$version" "${build_args[@]}" -t "$tag" -f Dockerfile . >&2
echo "image.sh: built $tag in $((SECONDS - start)) s: $(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')" >&2
echo "$tag"
