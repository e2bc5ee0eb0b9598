#!/usr/bin/env bash
# Builds the image from the Dockerfile with podman, without a registry, and loads it into the
# local podman storage as localhost/payrails-mtls-proxy:dev (Docker format, so that podman
# keeps the HEALTHCHECK; OCI images have none).
#
#   scripts/image.sh [--pkcs11] [--version V] [--tag NAME] [--bases local|public] [--bases-only]
#
# --pkcs11 builds the -pkcs11 flavour instead (keys in an HSM): the Dockerfile's pkcs11 target,
# scripts/build.sh --pkcs11 (cgo, glibc) on a glibc base, as localhost/payrails-mtls-proxy:dev-pkcs11
# (payrails-mtls-proxy:<version>-pkcs11 in a registry). Its image holds no PKCS#11 library: mount
# the HSM vendor's (or SoftHSM2's) and name it in key_uri's module-path, e.g.
#   podman run ... -v /usr/lib/softhsm/libsofthsm2.so:/usr/lib/softhsm/libsofthsm2.so:ro \
#     -v /var/lib/softhsm/tokens:/var/lib/softhsm/tokens -v "$PWD/secrets:/run/secrets:ro" \
#     -e 'PAYRAILS_PROXY_KEY_URI=pkcs11:token=payrails?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin' \
#     localhost/payrails-mtls-proxy:dev-pkcs11
# (SoftHSM2's token folder must be writable by uid 65532: it takes lock files there.)
#
# The Dockerfile's base images are build arguments whose defaults are the public images
# (GO_IMAGE golang:1.27.3-bookworm, BASE_IMAGE gcr.io/distroless/static-debian12:nonroot,
# CC_BASE_IMAGE gcr.io/distroless/cc-debian12:nonroot for --pkcs11). --bases public builds with
# those (a machine that can pull them). --bases local, the default, makes local equivalents
# first and passes them in, so nothing is pulled:
#   localhost/payrails-mtls-proxy-base/debian:bookworm   Debian bookworm (debootstrap, minbase,
#                                                        with ca-certificates, curl, and gcc and
#                                                        libc6-dev for cgo)
#   localhost/payrails-mtls-proxy-base/golang:1.27.3     that, plus the Go toolchain go.mod pins
#                                                        (the go command's own copy, from the
#                                                        module proxy): like the golang image,
#                                                        it builds with cgo
#   localhost/payrails-mtls-proxy-base/static:nonroot    like distroless/static: CA certificates,
#                                                        time zones, /etc/passwd and /etc/group
#                                                        with nonroot (65532), no shell, no libc
#   localhost/payrails-mtls-proxy-base/cc:nonroot        like distroless/cc (--pkcs11): static's
#                                                        files plus Debian's libc6 (glibc),
#                                                        libssl3 (libssl, libcrypto), libgcc-s1,
#                                                        libgomp1 and libstdc++6, with their dpkg
#                                                        records in /var/lib/dpkg/status.d; no
#                                                        shell
# A build makes the bases its flavour needs; --bases-only makes all four and stops (CI does
# that early, in the background). Local bases need root (debootstrap) and a Debian mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian).
#
# Modules: the script downloads them on this machine (go mod download, checked against
# go.sum, into its cache) and mounts that module cache into the build, which then runs with
# --network none: the Dockerfile's `go mod download` and build find every module there. This
# keeps the build offline and independent of the machine's network set-up (a build container
# does not trust a TLS-intercepting egress proxy's CA, as CI's sandbox has), and it is quick.
#
# Needs podman (Debian: apt-get install podman runc debootstrap). Caches the Debian root file
# system and the module cache in IMAGE_CACHE_DIR (default ~/.cache/payrails-mtls-proxy/image);
# the build uses this machine's Go build cache (go env GOCACHE), so what scripts/build.sh
# compiled here (with --pkcs11 too: the same gcc, Debian bookworm's) is not compiled again
# (-trimpath builds share it across paths).
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
# The image flavour: what the build is given and what it is called. "default": the static
# binary on the distroless/static-like base; "pkcs11" (--pkcs11): the cgo binary on the
# distroless/cc-like base.
flavour=default
while [ $# -gt 0 ]; do
  case "$1" in
    --pkcs11) flavour=pkcs11; shift ;;
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
local_cc=localhost/payrails-mtls-proxy-base/cc:nonroot
# What debootstrap adds to minbase: CA certificates, curl (the application stand-in of the
# image tests), and gcc with libc6-dev, so that the golang base builds with cgo (the pkcs11
# flavour) as the official golang images do. The root file system's tarball is named after
# this list, and the debian and golang bases carry that name in a label: a cache or an image
# made from another list is made again, not reused.
rootfs_include=ca-certificates,curl,gcc,libc6-dev
rootfs_name="debian-bookworm-minbase-${rootfs_include//,/-}"
rootfs_label=io.payrails-mtls-proxy.base.rootfs
# What distroless/cc-debian12 adds to distroless/static: glibc and OpenSSL's libraries (its
# base-debian12), libgcc_s, libgomp and libstdc++ (cc). Vendors' PKCS#11 libraries, and
# SoftHSM2's, link against these.
cc_packages="libc6 libssl3 libgcc-s1 libgomp1 libstdc++6"
build_args=()
case "$flavour" in
  default)
    tag="${tag:-localhost/payrails-mtls-proxy:dev}"
    base_arg=BASE_IMAGE local_base=$local_static
    ;;
  pkcs11)
    tag="${tag:-localhost/payrails-mtls-proxy:dev-pkcs11}"
    base_arg=CC_BASE_IMAGE local_base=$local_cc
    build_args+=(--target pkcs11)
    ;;
esac

# debian_rootfs prints a tarball of a Debian bookworm root file system, made once.
debian_rootfs() {
  local tarball="$cache/$rootfs_name.tar"
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
    echo "image.sh: debootstrap bookworm (minbase, $rootfs_include) from ${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >&2
    debootstrap --variant=minbase --include="$rootfs_include" bookworm "$root" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 || {
      echo "image.sh: debootstrap failed; the end of $cache/debootstrap.log:" >&2; tail -5 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    # A root file system made from another package list is not used again.
    find "$cache" -maxdepth 1 -name 'debian-bookworm-minbase*.tar' ! -name "$rootfs_name.tar" -delete
  fi
  echo "$tarball"
}

# made_from_rootfs tells whether image $1 exists and was made from this script's root file system.
made_from_rootfs() {
  [ "$(podman image inspect --format "{{index .Labels \"$rootfs_label\"}}" "$1" 2>/dev/null)" = "$rootfs_name" ]
}

make_debian() {
  if ! made_from_rootfs "$local_debian"; then
    podman import --change 'CMD ["bash"]' --change "LABEL $rootfs_label=$rootfs_name" \
      "$(debian_rootfs)" "$local_debian" >/dev/null
    echo "image.sh: made $local_debian" >&2
  fi
}

make_golang() {
  if made_from_rootfs "$local_golang"; then
    return
  fi
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
  # As the official golang image: GOTOOLCHAIN=local, GOPATH=/go, Go first on PATH. The debian
  # base's label (its root file system) comes along, so a new root file system remakes this too.
  cat >"$dir/Containerfile" <<EOF
FROM $local_debian
ENV GOLANG_VERSION=$toolchain GOTOOLCHAIN=local GOPATH=/go \\
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY usr/local/go /usr/local/go
COPY go /go
WORKDIR /go
EOF
  podman build --layers=false --format docker --network none -f "$dir/Containerfile" -t "$local_golang" "$dir" >/dev/null
  rm -rf "$dir"
  echo "image.sh: made $local_golang" >&2
}

# static_tree fills folder $1 with what distroless/static-debian12:nonroot holds: CA
# certificates, time zones, passwd and group with root, nobody and nonroot (65532), /tmp,
# nonroot's home; nothing to run.
static_tree() {
  local dir=$1 src="$1.debian"
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
}

# cc_tree adds to folder $1 the files of the Debian packages $cc_packages that a program needs
# (what they put under /etc, /lib*, /usr/lib*, and each one's copyright) from the root file
# system, and their dpkg records in /var/lib/dpkg/status.d, where distroless keeps them for
# scanners. The layout is the packages' own (/lib and /usr/lib apart), as in distroless.
cc_tree() {
  local dir=$1 src="$1.debian" pkg list path
  rm -rf "$src" && mkdir -p "$src" "$dir/var/lib/dpkg/status.d"
  tar -C "$src" -xf "$(debian_rootfs)"
  for pkg in $cc_packages; do
    list=""
    for list in "$src/var/lib/dpkg/info/$pkg.list" "$src/var/lib/dpkg/info/$pkg":*.list ""; do
      [ -f "$list" ] && break
    done
    if [ -z "$list" ]; then
      echo "image.sh: the root file system has no package $pkg (add it to rootfs_include)" >&2; exit 1
    fi
    while IFS= read -r path; do
      case "$path" in
        /etc/* | /lib/* | /lib64/* | /usr/lib/* | /usr/lib64/* | /usr/share/doc/*/copyright) ;;
        *) continue ;;
      esac
      if [ -L "$src$path" ] || [ -f "$src$path" ]; then
        (cd "$src" && cp -a --parents ".$path" "$dir/")
      fi
    done <"$list"
    awk -v want="Package: $pkg" 'BEGIN { RS = ""; ORS = "\n\n" } index($0, want "\n") == 1 { print }' \
      "$src/var/lib/dpkg/status" >"$dir/var/lib/dpkg/status.d/$pkg"
    if [ ! -s "$dir/var/lib/dpkg/status.d/$pkg" ]; then
      echo "image.sh: the root file system has no dpkg record of $pkg" >&2; exit 1
    fi
  done
  rm -rf "$src"
}

# import_nonroot imports folder $1 as image $2, owned by root but for /home/nonroot, with the
# user, home and environment of distroless' nonroot images, and removes the folder.
import_nonroot() {
  local dir=$1 image=$2
  tar --numeric-owner --owner=0 --group=0 --exclude=./home/nonroot -C "$dir" -cf "$dir.tar" .
  tar --numeric-owner --owner=65532 --group=65532 -C "$dir" -rf "$dir.tar" ./home/nonroot
  podman import --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' "$dir.tar" "$image" >/dev/null
  rm -rf "$dir" "$dir.tar"
  echo "image.sh: made $image" >&2
}

make_static() {
  if ! podman image exists "$local_static"; then
    static_tree "$cache/static.tmp"
    import_nonroot "$cache/static.tmp" "$local_static"
  fi
}

make_cc() {
  if ! podman image exists "$local_cc"; then
    static_tree "$cache/cc.tmp"
    cc_tree "$cache/cc.tmp"
    import_nonroot "$cache/cc.tmp" "$local_cc"
  fi
}

if [ "$bases" = local ]; then
  make_debian
  make_golang
  if [ "$bases_only" = true ]; then
    make_static
    make_cc
  elif [ "$flavour" = pkcs11 ]; then
    make_cc
  else
    make_static
  fi
  build_args+=(--build-arg "GO_IMAGE=$local_golang" --build-arg "$base_arg=$local_base")
fi
if [ "$bases_only" = true ]; then
  exit 0
fi
gocache=$(go env GOCACHE)
mkdir -p "$gocache" "$cache/gomod"
echo "image.sh: go mod download (into $cache/gomod, mounted into the build)" >&2
GOMODCACHE="$cache/gomod" GOFLAGS=-modcacherw go mod download
start=$SECONDS
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "image.sh: podman build $tag ($flavour flavour, version $version, $bases base images)" >&2
# /go/pkg/mod: the module cache (GOPATH=/go in the golang images); /root/.cache/go-build: this
# machine's Go build cache. TARGETOS and TARGETARCH: podman sets them only with --platform.
# --layers=false: each stage runs in one container and only the image is committed. With a layer
# per instruction, vfs storage (CI's, see .ci/podman-setup.sh) copies the whole Go image (~580 MB)
# at every step of the build stage; the steps are quick anyway with the caches mounted.
# shellcheck disable=SC2086 # PODMAN_BUILD_OPTS is a list of options
podman build --layers=false --format docker --network none ${PODMAN_BUILD_OPTS:-} \
  -v "$cache/gomod:/go/pkg/mod" -v "$gocache:/root/.cache/go-build" \
  --build-arg "TARGETOS=$(go env GOOS)" --build-arg "TARGETARCH=$(go env GOARCH)" \
  --build-arg "VERSION=$version" "${build_args[@]}" -t "$tag" -f Dockerfile . >&2
echo "image.sh: built $tag in $((SECONDS - start)) s: $(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}')" >&2
# Every build leaves its stages' last layers behind as untagged images, and the image the tag named
# before: with vfs storage (CI's) each layer of a build stage is a full copy of the Go image (about
# 600 MB). Remove those that earlier builds left (made before this one started; the local Go image's
# label marks the build stages', the title label the final stages'): this build's stay, the next
# build's layer cache (go mod download), and other images are left alone.
for label in "$rootfs_label" org.opencontainers.image.title=payrails-mtls-proxy; do
  podman image prune --force --filter "label=$label" --filter "until=$started" >/dev/null
done
echo "$tag"
