#!/usr/bin/env bash
# Build the local base image `localhost/hivemind-base:bookworm` without any registry:
# debootstrap a minimal Debian 12 with Python 3.11, then `podman import` the tree.
# Real users skip this: the Containerfiles default to a public Python image.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${BASE_IMAGE:-localhost/hivemind-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${BASE_WORK:-$PWD/.tools/base-rootfs}
log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if podman image exists "$IMAGE" && [ "${REBUILD_BASE:-0}" != 1 ]; then
  log "$IMAGE exists (REBUILD_BASE=1 to rebuild)"
  exit 0
fi
rm -rf "$WORK"
mkdir -p "$WORK"
log "debootstrap --variant=minbase bookworm (python3, venv, CA certificates)"
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,libgomp1,tini \
  bookworm "$WORK" "$MIRROR" >"$WORK.log" 2>&1 || { tail -30 "$WORK.log"; exit 1; }
# Slim the tree: no apt lists, caches, docs or locales in the image.
rm -rf "$WORK"/var/lib/apt/lists/* "$WORK"/var/cache/apt/* "$WORK"/usr/share/doc/* \
  "$WORK"/usr/share/man/* "$WORK"/usr/share/locale/*
log "podman import -> $IMAGE"
tar -C "$WORK" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" >/dev/null
rm -rf "$WORK"
log "built $IMAGE"
