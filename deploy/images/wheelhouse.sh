#!/usr/bin/env bash
# Prepare the build context of one service image: .wheelhouse/<service>/ with a wheel for every
# package it needs (pip wheel on the host, so the CPU build of torch and the llama-cpp-python wheel
# that pip already built are reused). The image installs offline (service-base.Containerfile).
#   deploy/images/wheelhouse.sh <service>
set -euo pipefail
cd "$(dirname "$0")/../.."

service=${1:?usage: wheelhouse.sh <service>}
PY=${PY:-.venv/bin/python}
case "$service" in
  gateway|mcp|embedding|inference|trainer|exporter) pkgs=(libs/common "services/$service") ;;
  *) echo "unknown service: $service" >&2; exit 2 ;;
esac
ctx=.wheelhouse/$service
# Wheels that markers skip on the host's Python but an image's Python may need (Debian 12 ships
# 3.11.2, below redis-py's `python_full_version < "3.11.3"` line for async-timeout).
markers=("async-timeout>=4.0.3")
mkdir -p "$ctx/wheels"
# A fresh wheel dir every time (the old one serves as a local cache), so wheels of versions that
# are no longer wanted never linger; our own packages are always rebuilt.
rm -rf "$ctx/wheels.new" && mkdir -p "$ctx/wheels" "$ctx/own"
rm -f "$ctx"/own/hivemind_*.whl
"$PY" -m pip wheel -q --disable-pip-version-check -c constraints.txt \
  --find-links "$ctx/wheels" --wheel-dir "$ctx/wheels.new" "${pkgs[@]}" "${markers[@]}" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
rm -rf "$ctx/wheels" && mv "$ctx/wheels.new" "$ctx/wheels"
# setuptools leaves build/ trees in the source folders; they are not ours to keep.
for pkg in "${pkgs[@]}"; do rm -rf "$pkg/build"; done
if ls "$ctx"/wheels/nvidia_* >/dev/null 2>&1; then
  echo "wheelhouse for $service pulled CUDA packages; torch must be the CPU build" >&2
  exit 1
fi
# Our wheels go in their own folder and layer; each folder gets a lock file (sha256 of every
# wheel) that the Containerfile COPYs first, so a changed wheel invalidates exactly its layer
# (bind mounts alone are not part of the build cache key).
rm -rf "$ctx/own" && mkdir -p "$ctx/own"
mv "$ctx"/wheels/hivemind_*.whl "$ctx/own/"
(cd "$ctx/wheels" && sha256sum -- *.whl) > "$ctx/wheels.lock"
(cd "$ctx/own" && sha256sum -- *.whl) > "$ctx/own.lock"
echo "$ctx: $(ls "$ctx/wheels" "$ctx/own" | grep -c whl) wheels, $(du -sh "$ctx" | cut -f1)"
