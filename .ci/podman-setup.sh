#!/usr/bin/env bash
# Sets up this machine's podman (Debian's) the way CI's sandbox needs it, so that
# scripts/image.sh and the image tests run plain `podman ...` commands, as a user would:
# - runtime runc: crun fails on this sandbox's hybrid cgroups (v1 controllers, v2 unified);
# - storage vfs: no overlay mounts inside the sandbox;
# - default ulimits nofile and nproc 1024: the sandbox's own limits are above what an
#   unprivileged container may set, and runc refuses to start one then;
# - cgroup manager cgroupfs and file events: there is no systemd here.
# Writes /etc/containers/containers.conf and storage.conf; for CI machines (run as root).
set -euo pipefail
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<'CONF'
# Written by payrails-mtls-proxy's .ci/podman-setup.sh (CI's sandbox).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > /etc/containers/storage.conf <<'CONF'
# Written by payrails-mtls-proxy's .ci/podman-setup.sh (CI's sandbox).
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
# Storage first used with another driver (podman picked overlay before this file existed)
# cannot be opened with vfs: start it afresh.
if ! out=$(podman info 2>&1); then
  if grep -q "database configuration mismatch\|does not match our storage graph driver" <<<"$out"; then
    echo "podman-setup: the storage was made with another driver; resetting it for vfs" >&2
    podman system reset --force >/dev/null 2>&1 || rm -rf /var/lib/containers/storage
  else
    echo "podman-setup: podman info failed:" >&2; echo "$out" >&2; exit 1
  fi
fi
podman info --format 'podman {{.Version.Version}}: runtime {{.Host.OCIRuntime.Name}}, storage {{.Store.GraphDriverName}}, cgroups {{.Host.CgroupsVersion}} ({{.Host.CgroupManager}})'
