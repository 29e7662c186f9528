#!/usr/bin/env bash
# Join the six Cluster nodes of a profile once, after their units run on both nodes:
# the three primaries take the slots, then each replica attaches to the primary hosts.yaml names
# (redis-cli --cluster create would pair them by itself and could put a pair on one machine).
#   REDISCLI_AUTH=$(cat /etc/hivemind/secrets/redis-admin.password) deploy/redis/create-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${REDISCLI_AUTH:?export REDISCLI_AUTH with the admin user's password}"
export REDISCLI_AUTH
PY=${PY:-.venv/bin/python}
PROFILE=${HIVEMIND_PROFILE:-homelab}
RCLI=${REDIS_CLI:-redis-cli}
mapfile -t plan < <("$PY" - "$PROFILE" <<'PY'
import sys
from hivemind_cli.render.model import deploy_layout
from hivemind_common.hosts import load_registry
registry = load_registry()
layout = deploy_layout(registry, sys.argv[1])
nodes = registry.profile(sys.argv[1]).nodes
by_name = {n.name: n for n in layout.cluster.nodes}
for n in layout.cluster.nodes:
    of = by_name[n.of] if n.of else None
    where = f"{nodes[of.node].address}:{of.port}" if of else "-"
    print(n.role, f"{nodes[n.node].address}:{n.port}", where)
PY
)
primaries=()
for line in "${plan[@]}"; do
  read -r role addr _ <<<"$line"
  [ "$role" = primary ] && primaries+=("$addr")
done
echo "creating the cluster on ${primaries[*]}"
$RCLI --user admin --cluster create "${primaries[@]}" --cluster-replicas 0 --cluster-yes
for line in "${plan[@]}"; do
  read -r role addr of <<<"$line"
  [ "$role" = replica ] || continue
  id=$($RCLI --user admin -h "${of%:*}" -p "${of##*:}" cluster myid)
  echo "replica $addr of $of ($id)"
  $RCLI --user admin --cluster add-node "$addr" "$of" --cluster-slave --cluster-master-id "$id"
done
$RCLI --user admin --cluster check "${primaries[0]}"
