#!/usr/bin/env bash
# Secrets of a Quadlet deployment, made once and installed as podman secrets on every node.
#   deploy/redis/make-secrets.sh generate [dir] [cluster|sentinel]  # new passwords into dir (0600)
#   deploy/redis/make-secrets.sh install  [dir]                     # podman secret create, per node
# Default dir: /etc/hivemind/secrets. Copy that dir to the other node (scp -p) and run `install`
# there too: both nodes must share the passwords. Nothing here is ever written into a unit file.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmd=${1:?usage: make-secrets.sh generate|install [dir] [cluster|sentinel]}
dir=${2:-/etc/hivemind/secrets}
mode=${3:-cluster}
PY=${PY:-.venv/bin/python}
PROFILE=${HIVEMIND_PROFILE:-homelab}

new_password() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))'; }

case "$cmd" in
generate)
  umask 077
  mkdir -p "$dir"
  for f in hivemind admin replicator sentinel; do
    [ -s "$dir/redis-$f.password" ] || new_password > "$dir/redis-$f.password"
  done
  [ -s "$dir/internal.token" ] || new_password > "$dir/internal.token"
  [ -s "$dir/grafana-admin" ] || new_password > "$dir/grafana-admin"
  pw() { cat "$dir/redis-$1.password"; }
  # Users: services get everything but admin commands and flushes; `admin` is for people and
  # redis-cli --cluster; `replicator` only replicates; `sentinel` has what Sentinel needs.
  cat > "$dir/redis-auth.conf" <<CONF
user default off
user hivemind on >$(pw hivemind) ~* &* +@all -@admin -flushall -flushdb
user admin on >$(pw admin) ~* &* +@all
user replicator on >$(pw replicator) +psync +replconf +ping
user sentinel on >$(pw sentinel) allchannels +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill
masteruser replicator
masterauth $(pw replicator)
CONF
  cat > "$dir/sentinel-auth.conf" <<CONF
sentinel auth-user hivemind sentinel
sentinel auth-pass hivemind $(pw sentinel)
CONF
  "$PY" - "$PROFILE" "$mode" "$(pw hivemind)" > "$dir/redis.url" <<'PY'
import sys
from hivemind_cli.render.model import deploy_layout
from hivemind_cli.render.redis_units import redis_url_for_services
from hivemind_common.hosts import load_registry
profile, mode, password = sys.argv[1:4]
registry = load_registry()
print(redis_url_for_services(registry, deploy_layout(registry, profile), mode, password=password))
PY
  echo "secrets written to $dir (mode 0600); run '$0 install $dir' on every node"
  ;;
install)
  put() {  # name file
    podman secret rm "$1" >/dev/null 2>&1 || true
    podman secret create "$1" "$2" >/dev/null
    echo "podman secret $1"
  }
  put hivemind-redis-auth "$dir/redis-auth.conf"
  put hivemind-sentinel-auth "$dir/sentinel-auth.conf"
  put hivemind-internal-token "$dir/internal.token"
  put hivemind-redis-url "$dir/redis.url"
  put hivemind-grafana-admin "$dir/grafana-admin"
  ;;
*) echo "unknown command: $cmd" >&2; exit 2 ;;
esac
