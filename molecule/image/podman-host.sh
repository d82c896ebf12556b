#!/usr/bin/env bash
# Prepares this machine to run the Molecule scenarios with Podman (as root, Debian 12):
#   1. installs the Debian packages that are missing (podman, runc, debootstrap, ...);
#   2. writes /etc/containers/containers.conf when there is none, with what was found necessary
#      on the project's machines: runc instead of crun (crun 1.8 rejects a cgroup v1 "hybrid" host) and default ulimits within the hard limits root has (podman's defaults
#      exceed them, and every container start then fails in setrlimit).
# An existing containers.conf is left alone (it belongs to the machine's administrator); the
# script only says what it lacks. Idempotent: a second run changes nothing.
set -euo pipefail

PACKAGES=(podman runc conmon netavark aardvark-dns iptables slirp4netns fuse-overlayfs uidmap
          catatonit debootstrap)
CONF=/etc/containers/containers.conf

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "$0: missing Debian packages: ${missing[*]} -- as root: apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "podman-host: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Hard limits of this process: containers cannot get more. Podman's own nproc ceiling is 32768.
nofile="$(ulimit -Hn)"
nproc="$(ulimit -Hu)"
[ "$nofile" = unlimited ] && nofile=1048576
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768

if [ ! -e "$CONF" ]; then
    echo "podman-host: writing $CONF (runtime runc, ulimits nofile=$nofile nproc=$nproc)" >&2
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF" <<CONFEOF
# Written by renderfarm.tractor molecule/image/podman-host.sh (make podman) for the Molecule
# scenarios. Delete it to have it rewritten.
[containers]
# Podman's default ulimits exceed this machine's hard limits (ulimit -Hn / -Hu), so every
# container start failed with "setrlimit RLIMIT_NOFILE: Operation not permitted".
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# crun 1.8 refuses cgroup v1 "hybrid" hosts ("cgroups in hybrid mode not supported"); runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
CONFEOF
else
    grep -q '^ *runtime *= *"runc"' "$CONF" \
        || echo "podman-host: note: $CONF exists and does not set runtime = \"runc\" (left alone)" >&2
    grep -q '^ *default_ulimits' "$CONF" \
        || echo "podman-host: note: $CONF exists and sets no default_ulimits (left alone)" >&2
fi
