#!/usr/bin/env bash
# Prepare the build context of one service image: .wheelhouse/<service>/ with a wheel for every
# package it needs (pip wheel on the host, so the CPU build of torch and the llama-cpp-python wheel
# that pip already built are reused) and the healthcheck script. The image installs offline.
#   deploy/images/wheelhouse.sh <service>
set -euo pipefail
cd "$(dirname "$0")/../.."

service=${1:?usage: wheelhouse.sh <service>}
PY=${PY:-.venv/bin/python}
case "$service" in
  gateway) pkgs=(libs/common libs/cli services/gateway) ;;
  mcp|embedding|inference|trainer|exporter) pkgs=(libs/common "services/$service") ;;
  *) echo "unknown service: $service" >&2; exit 2 ;;
esac
ctx=.wheelhouse/$service
# Wheels that markers skip on the host's Python but an image's Python may need (Debian 12 ships
# 3.11.2, below redis-py's `python_full_version < "3.11.3"` line for async-timeout).
markers=("async-timeout>=4.0.3")
mkdir -p "$ctx/wheels"
# Our own packages change often: drop their old wheels so the fresh build is the one installed.
rm -f "$ctx"/wheels/hivemind_*.whl
"$PY" -m pip wheel -q --disable-pip-version-check -c constraints.txt \
  --find-links "$ctx/wheels" --wheel-dir "$ctx/wheels" "${pkgs[@]}" "${markers[@]}" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
# setuptools leaves build/ trees in the source folders; they are not ours to keep.
for pkg in "${pkgs[@]}"; do rm -rf "$pkg/build"; done
if ls "$ctx"/wheels/nvidia_* >/dev/null 2>&1; then
  echo "wheelhouse for $service pulled CUDA packages; torch must be the CPU build" >&2
  exit 1
fi
install -m 0755 deploy/images/healthcheck.py "$ctx/hivemind-healthcheck"
echo "$ctx: $(ls "$ctx/wheels" | wc -l) wheels, $(du -sh "$ctx" | cut -f1)"
