#!/usr/bin/env bash
# Builds the base image of the Molecule scenarios from Debian packages (no registry needed):
# Debian 12 with systemd as PID 1, PostgreSQL 15's server binaries, Python 3 (with python3-apt,
# which ansible.builtin.apt needs to install the Tractor .deb), procps and iproute2 (testinfra's
# host.process and host.socket), sudo and acl (become).
#
#   molecule/image/build.sh            build unless the image exists; print its name
#   molecule/image/build.sh --name     only print the name
#
# The tag is a hash of this script (the recipe), so a changed recipe builds a new image and an
# unchanged one is never rebuilt. Needs root, debootstrap and podman (`make podman` installs them).
# Timings on a 2-core machine: debootstrap about 100 s, import about 25 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_NAME="localhost/renderfarm-tractor-base"
SUITE="bookworm"
# What the image holds, besides debootstrap's minbase.
PACKAGES=(
    systemd systemd-sysv dbus
    python3 python3-apt
    postgresql-15
    procps iproute2
    sudo acl
    ca-certificates
)
# Units that make no sense in a container, or that the scenarios do not want running.
MASK=(
    systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
    systemd-udev-trigger.service systemd-udev-settle.service
    getty.target getty@.service serial-getty@.service console-getty.service
    systemd-logind.service
    systemd-timesyncd.service
    systemd-networkd-wait-online.service
    apt-daily.timer apt-daily-upgrade.timer
    e2scrub_all.timer e2scrub_reap.service fstrim.timer
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
    sys-fs-fuse-connections.mount dev-hugepages.mount
)

TAG="$(sha256sum < "$HERE/build.sh" | cut -c1-12)"
IMAGE="$REPO_NAME:$TAG"

if [ "${1:-}" = "--name" ]; then
    echo "$IMAGE"
    exit 0
fi

if podman image exists "$IMAGE"; then
    echo "image $IMAGE: cached (recipe unchanged), not rebuilt" >&2
    echo "$IMAGE"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "$0: debootstrap needs root" >&2
    exit 1
fi

# The Debian mirror apt already uses on this machine (deb822 or one-line sources).
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list \
        | grep -vE 'security|nodesource|google|docker' | grep -oE 'https?://[^ ]*debian/?' | head -1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

work="$(mktemp -d /var/tmp/renderfarm-tractor-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
start=$SECONDS

echo "image $IMAGE: debootstrap $SUITE from $mirror" >&2
debootstrap --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
echo "image $IMAGE: debootstrap done in $((SECONDS - start)) s" >&2

# Security updates come from the same place as this machine's (if it has them).
if grep -hqs 'debian-security' /etc/apt/sources.list.d/* /etc/apt/sources.list; then
    security="${mirror%/debian*}/debian-security"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$mirror" "$SUITE" "$mirror" "$SUITE" "$security" "$SUITE" > "$root/etc/apt/sources.list"
fi

# No default PostgreSQL cluster: the emulated engines run their own (tractor-dbctl --init); the
# packaged one would only take memory and port 5432.
chroot "$root" /bin/sh -c 'pg_dropcluster 15 main 2>/dev/null || true; systemctl disable postgresql.service >/dev/null 2>&1 || true'

for unit in "${MASK[@]}"; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# systemd generates a machine id at first boot when the file is empty.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo "renderfarm-tractor" > "$root/etc/hostname"
# Smaller: no apt caches, lists, docs or man pages.
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/log/*.log

tar --numeric-owner -C "$root" -c . | gzip -1 > "$work/rootfs.tar.gz"
echo "image $IMAGE: rootfs $(du -h "$work/rootfs.tar.gz" | cut -f1), importing" >&2
podman import \
    --change 'CMD ["/sbin/init"]' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    --change 'ENV container=podman' \
    --change "LABEL org.opencontainers.image.title=renderfarm-tractor-base" \
    --change "LABEL renderfarm.tractor.recipe=$TAG" \
    "$work/rootfs.tar.gz" "$IMAGE" >/dev/null
echo "image $IMAGE: built in $((SECONDS - start)) s" >&2
echo "$IMAGE"
