#!/usr/bin/env bash
# Probe: two containers on one podman network resolve each other by name, as the services must
# (the gateway reaches Redis and the embedding service by container name). Exits non-zero with
# what to install when they do not. Uses a few-KB image made from Debian's busybox-static, so it
# needs no registry and no base image. Takes a few seconds; setup-containers.sh runs it each time.
set -euo pipefail

IMAGE=localhost/hivemind-dnsprobe:busybox
tag="$$-$RANDOM"
net="hivemind-dnsprobe-$tag"
a="dnsprobe-a-$tag"
b="dnsprobe-b-$tag"
backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null || echo unknown)

cleanup() {
  podman rm -f -t 0 "$a" "$b" >/dev/null 2>&1 || true
  podman network rm -f "$net" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if ! podman image exists "$IMAGE"; then
  busybox=$(command -v busybox || echo /bin/busybox)
  if ! { ldd "$busybox" 2>&1 || true; } | grep -q 'not a dynamic executable'; then
    echo "probe: $busybox is not statically linked; install busybox-static" >&2
    exit 1
  fi
  root=$(mktemp -d)
  mkdir -p "$root/bin"
  cp "$busybox" "$root/bin/busybox"
  tar -C "$root" -c . | podman import -q - "$IMAGE" >/dev/null
  rm -rf "$root"
fi

podman network create "$net" >/dev/null
for name in "$a" "$b"; do
  podman run -d --name "$name" --network "$net" "$IMAGE" /bin/busybox sleep 120 >/dev/null
done

# A name resolves when the network's DNS answers with an address for it (the bare name, as the
# services use it; the dnsname plugin also serves it under its domain, dns.podman by default).
resolves() {
  local from=$1 name=$2 out
  out=$(podman exec "$from" /bin/busybox nslookup "$name" 2>&1) || true
  if printf '%s\n' "$out" | sed -n '/^Name:/,$p' | grep -qE 'Address:? *[0-9]+\.[0-9]+'; then
    return 0
  fi
  printf '%s\n' "$out" >&2
  return 1
}

if resolves "$a" "$b" && resolves "$b" "$a"; then
  echo "==> container name resolution works (podman network backend: $backend)"
  exit 0
fi

{
  echo
  echo "ERROR: containers on one podman network cannot resolve each other by name."
  echo "  podman network backend: $backend"
  case "$backend" in
    cni)
      echo "  The CNI backend resolves names only with the dnsname plugin:"
      echo "    apt-get install golang-github-containernetworking-plugin-dnsname"
      echo "  (it needs dnsmasq-base); networks created before it was installed must be recreated."
      ;;
    netavark)
      echo "  The netavark backend resolves names with aardvark-dns:"
      echo "    apt-get install aardvark-dns"
      ;;
  esac
  echo "  resolv.conf inside the probe container:"
  podman exec "$a" /bin/busybox cat /etc/resolv.conf 2>&1 | sed 's/^/    /' || true
  echo "  See docs/deploy.md, \"Prerequisites on both nodes\"."
} >&2
exit 1
