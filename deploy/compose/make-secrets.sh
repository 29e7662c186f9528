#!/usr/bin/env bash
# Secrets for compose.yaml, written once under var/secrets/ (git-ignored, mode 0600):
# compose.env (internal token, Redis URL with the service user's password), redis-auth.conf
# (Redis users; the default user is off) and grafana-admin.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-var/secrets}
umask 077
mkdir -p "$dir"
gen() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
if [ ! -s "$dir/compose.env" ]; then
  svc=$(gen); admin=$(gen)
  cat > "$dir/redis-auth.conf" <<CONF
user default off
user hivemind on >$svc ~* &* +@all -@admin -flushall -flushdb
user admin on >$admin ~* &* +@all
CONF
  printf 'HIVEMIND_INTERNAL_TOKEN=%s\nHIVEMIND_REDIS_URL=redis://hivemind:%s@redis:6379/0\n' \
    "$(gen)" "$svc" > "$dir/compose.env"
  echo "$admin" > "$dir/redis-admin.password"
fi
[ -s "$dir/grafana-admin" ] || gen > "$dir/grafana-admin"
# The redis image reads its secret as uid 999; a bind-mounted file keeps the host's owner.
chmod 0644 "$dir/redis-auth.conf" "$dir/grafana-admin"
echo "compose secrets in $dir"
