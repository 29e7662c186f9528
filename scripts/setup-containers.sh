#!/usr/bin/env bash
# Tools for the container work (make images, make quadlet-check, make test-containers) on a fresh
# Debian 12 machine. Idempotent: a second run takes about a second.
#   - podman, runc, debootstrap, systemd (for systemd-analyze) and prometheus (for promtool)
#     from Debian's own archive;
#   - the `quadlet` generator from Debian trixie's podman package (bookworm's podman 4.3 has none),
#     fetched with a private apt state under .tools/apt and unpacked into .tools/podman-trixie;
#     the system's podman is never upgraded and the host's apt lists are not touched;
#   - /etc/containers/containers.conf: runtime = "runc" and the ulimits podman needs here;
#   - name resolution on podman networks: aardvark-dns on the netavark backend, the dnsname
#     plugin on CNI (bookworm's podman 4.3 default), then a probe that two containers on one
#     network resolve each other by name (scripts/probe-container-dns.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${TOOLS:-$PWD/.tools}
QUADLET="$TOOLS/podman-trixie/usr/libexec/podman/quadlet"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. Debian packages from bookworm.
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool check rules
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

# 2. containers.conf: runc and explicit ulimits (crun and the inherited limits fail here).
CONF=/etc/containers/containers.conf
if ! grep -qs '^runtime *= *"runc"' "$CONF" || ! grep -qs '^default_ulimits' "$CONF"; then
  log "writing runtime/ulimits to $CONF"
  $SUDO mkdir -p /etc/containers
  tmp=$(mktemp)
  if [ -f "$CONF" ]; then
    # Drop our two keys wherever they are, then add them back under their tables.
    grep -vE '^(runtime|default_ulimits) *=' "$CONF" > "$tmp" || true
  fi
  python3 - "$tmp" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
def put(text, table, line):
    header = f"[{table}]"
    if re.search(rf"^\[{table}\]\s*$", text, re.M):
        return re.sub(rf"^\[{table}\]\s*$", f"{header}\n{line}", text, count=1, flags=re.M)
    return text.rstrip("\n") + f"\n\n{header}\n{line}\n"
text = put(text, "engine", 'runtime = "runc"')
text = put(text, "containers", 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]')
open(path, "w").write(text.lstrip("\n"))
PY
  $SUDO install -m 0644 "$tmp" "$CONF"
  rm -f "$tmp"
fi

# 3. Container names must resolve on podman networks (the services find each other by name).
#    netavark resolves through aardvark-dns; CNI only through the dnsname plugin, which
#    `--no-install-recommends` leaves out. Networks made before the plugin keep resolving nothing:
#    they must be recreated (docs/deploy.md, "Prerequisites").
backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null || echo unknown)
dns_pkgs=()
case "$backend" in
  netavark) [ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] \
              || dns_pkgs+=(aardvark-dns) ;;
  cni)      [ -x /usr/lib/cni/dnsname ] || [ -x /opt/cni/bin/dnsname ] \
              || dns_pkgs+=(golang-github-containernetworking-plugin-dnsname) ;;
  *)        echo "podman reports network backend '$backend'; expected netavark or cni" >&2 ;;
esac
# The probe's image is a static busybox (no registry, no base image needed).
{ ldd /bin/busybox 2>&1 || true; } | grep -q 'not a dynamic executable' || dns_pkgs+=(busybox-static)
if [ ${#dns_pkgs[@]} -gt 0 ]; then
  log "apt-get install ${dns_pkgs[*]} (name resolution on the $backend network backend)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${dns_pkgs[@]}" >/dev/null
fi
bash scripts/probe-container-dns.sh

# 4. The quadlet generator from trixie's podman package, unpacked, never installed.
if [ ! -x "$QUADLET" ]; then
  log "fetching podman from Debian trixie for its quadlet binary"
  # trixie is signed with keys that only newer bookworm keyrings carry (a bookworm update).
  if [ ! -f /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debian-archive-keyring >/dev/null
  fi
  APT="$TOOLS/apt"
  mkdir -p "$APT/empty.d" "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs"
  # The same Debian mirror the system's own apt sources name (not the security archive).
  mirror=$(grep -hoE '(URIs:|^deb( \[[^]]*\])?) +[a-z]+://[^ ]+' /etc/apt/sources.list \
             /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | grep -oE '[a-z]+://[^ ]+' | grep -v -- '-security' | head -1 || true)
  [ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} trixie main" \
    > "$APT/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=$APT/empty.d"
        -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache"
        -o "Dir::Etc::preferencesparts=$APT/empty.d" -o "APT::Get::List-Cleanup=0"
        -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq
  (cd "$APT/debs" && apt-get "${opts[@]}" download podman)
  rm -rf "$TOOLS/podman-trixie"
  dpkg-deb -x "$APT"/debs/podman_*.deb "$TOOLS/podman-trixie"
  "$QUADLET" -version >/dev/null
fi
log "containers ready (quadlet: $("$QUADLET" -version 2>&1 | head -1))"
