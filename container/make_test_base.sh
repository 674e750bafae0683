#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim where no registry can be reached: a Debian bookworm
# rootfs (python3 3.11 + venv) made by debootstrap and imported into podman. Idempotent: an image
# that already exists is kept, so only the first run pays for debootstrap (about a minute).
#
# TEST BASE ONLY: the host's CA bundle is copied in so that pip, inside `podman build`, trusts this
# machine's TLS proxy. Never do that in the Dockerfile or in an image that is shipped.
#
# ARCH another than the host's (arm64 on an x86 machine) needs qemu-user-static registered with
# binfmt_misc: debootstrap's second stage then runs under emulation (about 4 minutes, not one).
#
# usage: container/make_test_base.sh [IMAGE] [ARCH]
#   IMAGE  default localhost/yolov7-test-base:bookworm
#   ARCH   Debian's name (amd64, arm64); default the host's
set -euo pipefail

image="${1:-localhost/yolov7-test-base:bookworm}"
arch="${2:-$(dpkg --print-architecture)}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "$image"; then
    echo "$image exists"
    exit 0
fi

rootfs="$(mktemp -d /tmp/yolov7-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --arch="$arch" --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# What python:3.11-slim leaves out too: apt's caches and lists, docs, man pages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

tar -C "$rootfs" -c . | podman import --quiet --arch "$arch" - "$image" >/dev/null
echo "$image imported"
