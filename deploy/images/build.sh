#!/usr/bin/env bash
# Build service images with podman:  deploy/images/build.sh [service ...]   (default: all six)
#   BASE_IMAGE=localhost/hivemind-base:bookworm  use the local base (`make base-image`);
#                                                 unset: the Containerfiles' public Python image.
#   IMAGE_PREFIX (localhost/hivemind-), IMAGE_TAG (latest).
#   GPU=cuda|rocm  build inference and trainer for the GPU node (Containerfile build argument GPU;
#                  default cpu). Inference compiles llama.cpp there: give a toolkit BASE_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/../.."

services=("$@")
[ ${#services[@]} -gt 0 ] || services=(gateway mcp embedding inference trainer exporter)
PREFIX=${IMAGE_PREFIX:-localhost/hivemind-}
TAG=${IMAGE_TAG:-latest}
log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

args=(--format docker --layers)
[ -z "${BASE_IMAGE:-}" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# HTTPS to package registries is intercepted on some networks: give pip (and apt) inside the
# build the host's CA bundle, read-only, when one exists.
CA=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$CA" ]; then
  args+=(--volume "$CA:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
# The shared base first (user, layout, venv, healthcheck, the ONBUILD wheel install); every
# service image builds on it and adds only its labels, port, volumes and command.
SERVICE_BASE="${PREFIX}service-base:$TAG"
log "podman build $SERVICE_BASE${BASE_IMAGE:+ (base $BASE_IMAGE)}"
podman build "${args[@]}" -q -f deploy/images/service-base.Containerfile -t "$SERVICE_BASE" \
  deploy/images >/dev/null
args+=(--build-arg "SERVICE_BASE=$SERVICE_BASE")
GPU=${GPU:-cpu}
case "$GPU" in cpu|cuda|rocm) ;; *) echo "GPU must be cpu, cuda or rocm" >&2; exit 2 ;; esac
for service in "${services[@]}"; do
  start=$SECONDS
  extra=()
  case "$service" in inference|trainer) extra=(--build-arg "GPU=$GPU") ;; esac
  log "wheelhouse for $service"
  deploy/images/wheelhouse.sh "$service"
  log "podman build $PREFIX$service:$TAG${BASE_IMAGE:+ (base $BASE_IMAGE)}"
  podman build "${args[@]}" "${extra[@]}" -q -f "services/$service/Containerfile" \
    -t "$PREFIX$service:$TAG" ".wheelhouse/$service" >/dev/null
  log "built $PREFIX$service:$TAG in $((SECONDS - start))s ($(podman image inspect \
    --format '{{.Size}}' "$PREFIX$service:$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
done
