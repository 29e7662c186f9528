"""Quadlet units for Redis: the 6-node Cluster, or a primary and replicas under 3 Sentinels.

Every redis-server announces its node's address (never 127.0.0.1), refuses eviction
(``noeviction``: facts and job queues must never be dropped), appends to an AOF, keeps
``protected-mode yes`` and reads its users and passwords from a podman secret (a config fragment
made by ``deploy/redis/make-secrets.sh``), so no password is ever written in a unit.
"""

from __future__ import annotations

from hivemind_cli.render.model import ClusterLayout, DeployLayout, RedisNode, SentinelLayout
from hivemind_cli.render.service_units import NETWORK
from hivemind_cli.render.unit_file import Unit, exec_line, header
from hivemind_common.hosts import Registry

REDIS_IMAGE = "docker.io/library/redis:7.2-bookworm"
SECRET_REDIS_AUTH = "hivemind-redis-auth"
SECRET_SENTINEL_AUTH = "hivemind-sentinel-auth"
AUTH_CONF = "/run/secrets/redis-auth.conf"
REDIS_UID = "999"  # the redis user of the official image


def _durability(maxmemory: str) -> list[str]:
    return [
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "3600 1 300 100 60 10000",
        "--maxmemory", maxmemory,
        "--maxmemory-policy", "noeviction",
        "--protected-mode", "yes",
        "--bind", "0.0.0.0",
    ]  # fmt: skip


def _redis_unit(
    layout: DeployLayout, node: str, address: str, rnode: RedisNode, what: str, args: list[str]
) -> Unit:
    name = f"hivemind-redis-{rnode.name}"
    unit = Unit(f"{name}.container", header(layout.profile, node))
    unit.add("Unit", "Description", f"Hive-Mind Redis {what} {rnode.name} ({node}:{rnode.port})")
    unit.add("Unit", "Wants", "network-online.target")
    unit.add("Unit", "After", "network-online.target")
    c = "Container"
    unit.add(c, "ContainerName", name)
    unit.add(c, "Image", REDIS_IMAGE)
    unit.add(c, "Network", f"{NETWORK}.network")
    unit.add(c, "PublishPort", f"{address}:{rnode.port}:{rnode.port}")
    if "--cluster-enabled" in args:
        bus = rnode.port + 10000
        unit.add(c, "PublishPort", f"{address}:{bus}:{bus}")
    unit.add(c, "Volume", f"{name}.volume:/data:Z")
    unit.add(
        c,
        "Secret",
        f"{SECRET_REDIS_AUTH},type=mount,target={AUTH_CONF},"
        f"uid={REDIS_UID},gid={REDIS_UID},mode=0400",
    )
    unit.add(c, "Exec", exec_line(["redis-server", AUTH_CONF, *args]))
    # The default user is off, so an answer of NOAUTH also proves the server is up.
    unit.add(c, "HealthCmd", f"sh -c 'redis-cli -p {rnode.port} ping | grep -qE \"PONG|NOAUTH\"'")
    unit.add(c, "HealthInterval", "15s")
    unit.add(c, "Label", f"app=hivemind service=redis redis={rnode.name}")
    unit.add("Service", "Restart", "always")
    unit.add("Service", "TimeoutStopSec", "60")
    unit.add("Install", "WantedBy", "multi-user.target default.target")
    return unit


def _volume(layout: DeployLayout, node: str, name: str) -> Unit:
    unit = Unit(f"{name}.volume", header(layout.profile, node))
    unit.add("Unit", "Description", f"Hive-Mind Redis data ({name})")
    unit.add("Volume", "VolumeName", name)
    unit.add("Volume", "Label", "app=hivemind service=redis")
    return unit


def cluster_units(
    registry: Registry, layout: DeployLayout, cluster: ClusterLayout, node: str
) -> list[Unit]:
    """One container and volume per Cluster node placed on ``node``."""
    address = registry.profile(layout.profile).nodes[node].address
    units: list[Unit] = []
    for rnode in cluster.nodes:
        if rnode.node != node:
            continue
        args = [
            "--port", str(rnode.port),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            "--cluster-announce-ip", address,
            "--cluster-announce-port", str(rnode.port),
            "--cluster-announce-bus-port", str(rnode.port + 10000),
            *_durability(cluster.maxmemory),
        ]  # fmt: skip
        what = "Cluster primary" if rnode.role == "primary" else f"Cluster replica of {rnode.of}"
        units.append(_redis_unit(layout, node, address, rnode, what, args))
        units.append(_volume(layout, node, f"hivemind-redis-{rnode.name}"))
    return units


def sentinel_units(
    registry: Registry, layout: DeployLayout, sentinel: SentinelLayout, node: str
) -> list[Unit]:
    """Primary/replica containers and the Sentinels placed on ``node``."""
    nodes = registry.profile(layout.profile).nodes
    address = nodes[node].address
    primary = sentinel.primary
    primary_addr = nodes[primary.node].address
    units: list[Unit] = []
    for rnode in sentinel.nodes:
        if rnode.node != node:
            continue
        args = [
            "--port", str(rnode.port),
            "--replica-announce-ip", address,
            "--replica-announce-port", str(rnode.port),
            *_durability(sentinel.maxmemory),
        ]  # fmt: skip
        if rnode.role == "replica":
            args += ["--replicaof", primary_addr, str(primary.port)]
        what = "primary" if rnode.role == "primary" else "replica"
        units.append(_redis_unit(layout, node, address, rnode, what, args))
        units.append(_volume(layout, node, f"hivemind-redis-{rnode.name}"))
    for s in sentinel.sentinels:
        if s.node == node:
            units += _sentinel(layout, sentinel, node, address, primary_addr, primary.port, s.port)
    return units


def _sentinel(
    layout: DeployLayout,
    sentinel: SentinelLayout,
    node: str,
    address: str,
    primary_addr: str,
    primary_port: int,
    port: int,
) -> list[Unit]:
    """A Sentinel writes its own config (it records what it learns), so it lives on a volume;
    the first start writes the static part and appends the auth lines from the secret."""
    name = f"hivemind-sentinel-{port}"
    svc = sentinel.service
    lines = [
        f"port {port}",
        f"sentinel announce-ip {address}",
        f"sentinel announce-port {port}",
        f"sentinel monitor {svc} {primary_addr} {primary_port} {sentinel.quorum}",
        f"sentinel down-after-milliseconds {svc} 5000",
        f"sentinel failover-timeout {svc} 60000",
        f"sentinel parallel-syncs {svc} 1",
    ]
    printf = " ".join(f'"{line}"' for line in lines)
    script = (
        "test -f /data/sentinel.conf || { printf '%s\\n' "
        f"{printf} > /data/sentinel.conf && cat /run/secrets/sentinel-auth.conf "
        ">> /data/sentinel.conf; }; exec redis-server /data/sentinel.conf --sentinel"
    )
    unit = Unit(f"{name}.container", header(layout.profile, node))
    unit.add("Unit", "Description", f"Hive-Mind Redis Sentinel ({node}:{port})")
    unit.add("Unit", "Wants", "network-online.target")
    unit.add("Unit", "After", "network-online.target")
    c = "Container"
    unit.add(c, "ContainerName", name)
    unit.add(c, "Image", REDIS_IMAGE)
    unit.add(c, "Network", f"{NETWORK}.network")
    unit.add(c, "PublishPort", f"{address}:{port}:{port}")
    unit.add(c, "Volume", f"{name}.volume:/data:U,Z")
    unit.add(
        c,
        "Secret",
        f"{SECRET_SENTINEL_AUTH},type=mount,target=/run/secrets/sentinel-auth.conf,"
        f"uid={REDIS_UID},gid={REDIS_UID},mode=0400",
    )
    unit.add(c, "User", f"{REDIS_UID}:{REDIS_UID}")
    unit.add(c, "Entrypoint", "/bin/sh")
    unit.add(c, "Exec", exec_line(["-c", script]))
    unit.add(c, "Label", "app=hivemind service=redis-sentinel")
    unit.add("Service", "Restart", "always")
    unit.add("Install", "WantedBy", "multi-user.target default.target")
    return [unit, _volume(layout, node, name)]


def redis_url_for_services(
    registry: Registry, layout: DeployLayout, mode: str, *, password: str = "<password>"
) -> str:
    """The ``HIVEMIND_REDIS_URL`` the services use (user ``hivemind``) for a topology."""
    nodes = registry.profile(layout.profile).nodes
    if mode == "cluster" and layout.cluster is not None:
        seeds = ",".join(f"{nodes[n.node].address}:{n.port}" for n in layout.cluster.nodes)
        return f"redis+cluster://hivemind:{password}@{seeds}"
    if mode == "sentinel" and layout.sentinel is not None:
        seeds = ",".join(f"{nodes[s.node].address}:{s.port}" for s in layout.sentinel.sentinels)
        return f"redis+sentinel://hivemind:{password}@{seeds}/{layout.sentinel.service}"
    raise ValueError(f"profile {layout.profile} describes no redis {mode} layout")
