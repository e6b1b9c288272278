#!/bin/sh
# `make base-image`: a Debian bookworm base with Python 3.11, made from Debian's archive alone (debootstrap), for
# sites (and this machine) that cannot pull docker.io/library/python. Needs root, debootstrap and podman or docker.
#
#   image/base-image.sh [TAG]        # default localhost/dicomflow-base:bookworm
#
# Then: make image BASE_IMAGE=localhost/dicomflow-base:bookworm
set -eu

TAG=${1:-localhost/dicomflow-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}
ENGINE=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$ENGINE" ] || { echo "base-image: neither podman nor docker is installed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base-image: install debootstrap (apt-get install -y debootstrap)" >&2; exit 1; }

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/dicomflow-rootfs.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT

# minbase: essential and required packages only; python3 is 3.11 on bookworm, python3-venv carries ensurepip
# (the image's own pip, used only to install the wheels copied in).
debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOTFS" "$MIRROR"

# Nothing the services need: package lists, caches, documentation, locales other than C.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
# debootstrap leaves the build host's name and resolver behind.
: > "$ROOTFS"/etc/hostname
: > "$ROOTFS"/etc/resolv.conf

tar --numeric-owner -C "$ROOTFS" -c . | "$ENGINE" import \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.description=Debian $SUITE minbase with python3 from $MIRROR" \
    - "$TAG"
echo "base image: $TAG"
