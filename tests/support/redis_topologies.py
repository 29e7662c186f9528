"""Real Redis Cluster (3 primaries + 3 replicas) and Sentinel (1 primary, 2 replicas, 3 sentinels).

Session fixtures ``redis_cluster`` and ``redis_sentinel`` start them on free loopback ports and
remove them at the end; ``redis_cluster_url`` / ``redis_sentinel_url`` flush the data before each
test. A test that kills a node calls ``heal()`` afterwards (the fixtures' own teardown does not
need it): the dead node restarts on its port and rejoins as a replica, so later tests again see
three primaries with a replica each, or one primary with two replicas.
Fast failure detection: cluster-node-timeout 1000 ms, Sentinel down-after-milliseconds 1000 ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from support.redis_servers import RedisProcess, redis_server_binary, start_redis
from support.waiting import free_port, wait_until

NODE_TIMEOUT_MS = 1000
DOWN_AFTER_MS = 1000
SENTINEL_SERVICE = "hivemind"


def _cmd(port: int, *args: object) -> Any:
    """One admin command on a fresh, closed-after connection."""
    with redis.Redis(port=port, decode_responses=True, socket_timeout=2) as client:
        return client.execute_command(*args)


def _info(port: int, section: str) -> dict[str, str]:
    raw = _cmd(port, "INFO", section)
    return {k: str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _replicas_online(port: int) -> int:
    """How many replicas a primary streams to, fully synced (``state=online``)."""
    info = _cmd(port, "INFO", "replication")
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


def _restart(node: RedisProcess) -> RedisProcess:
    """Start a stopped node again on its port, with its directory and arguments."""
    return start_redis(node.directory, *node.extra, port=node.port)


def kill_process(node: RedisProcess) -> int:
    """SIGKILL a node (no shutdown, no goodbye to its peers); returns the PID it had."""
    pid = node.process.pid
    os.kill(pid, signal.SIGKILL)
    node.process.wait(timeout=10)
    return pid


# --- Cluster ----------------------------------------------------------------------------------
@dataclass
class RedisClusterSet:
    """Six cluster-enabled servers; ``url`` is the ``redis+cluster://`` form of SPEC.md."""

    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def roles(self) -> dict[int, str]:
        """``{port: "master"|"slave"}`` as the live nodes see themselves now."""
        out: dict[int, str] = {}
        for n in self.nodes:
            if n.process.poll() is None:
                out[n.port] = _info(n.port, "replication").get("role", "?")
        return out

    def primaries(self) -> list[RedisProcess]:
        return [self.node(p) for p, role in self.roles().items() if role == "master"]

    def primary_for(self, key: str) -> RedisProcess:
        """The node serving ``key``'s slot now."""
        any_live = next(n for n in self.nodes if n.process.poll() is None)
        slot = int(_cmd(any_live.port, "CLUSTER", "KEYSLOT", key))
        for start, end, primary, *_ in _cmd(any_live.port, "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return self.node(int(primary[1]))
        raise LookupError(f"no node serves slot {slot}")

    def healthy(self) -> bool:
        """All six up, cluster_state ok everywhere, three primaries each with a synced replica."""
        if any(n.process.poll() is not None for n in self.nodes):
            return False
        for n in self.nodes:
            state = _cmd(n.port, "CLUSTER", "INFO")
            if "cluster_state:ok" not in str(state) and state.get("cluster_state") != "ok":
                return False
        primaries = self.primaries()
        if len(primaries) != 3:
            return False
        return all(_replicas_online(p.port) == 1 for p in primaries)

    def flush(self) -> None:
        for p in self.primaries():
            _cmd(p.port, "FLUSHALL")

    def heal(self, timeout: float = 60) -> None:
        """Restart dead nodes (they rejoin as replicas) and wait until the cluster is whole."""
        for i, n in enumerate(self.nodes):
            if n.process.poll() is not None:
                self.nodes[i] = _restart(n)
        wait_until(self.healthy, timeout=timeout, interval=0.1, what="redis cluster healthy")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def _cluster_ports() -> tuple[int, int]:
    """A client port Redis accepts in cluster mode (<= 55535) and a free bus port."""
    while True:
        port = free_port()
        if port <= 55535:
            return port, free_port()


def start_cluster(directory: Path) -> RedisClusterSet:
    """Six servers, ``redis-cli --cluster create`` with one replica each, wait until healthy."""
    nodes: list[RedisProcess] = []
    try:
        args = [
            *("--logfile", "redis.log", "--cluster-enabled", "yes"),
            *("--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
            *("--cluster-replica-validity-factor", "0"),
            *("--cluster-require-full-coverage", "no"),
        ]
        for i in range(6):
            port, bus = _cluster_ports()
            nodes.append(
                start_redis(directory / f"node-{i}", *args, "--cluster-port", str(bus), port=port)
            )
        cluster = RedisClusterSet(nodes)
        cli = os.path.join(os.path.dirname(redis_server_binary()), "redis-cli")
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        wait_until(cluster.healthy, timeout=60, interval=0.05, what="redis cluster healthy")
        return cluster
    except BaseException:
        for n in nodes:
            n.stop()
        raise


# --- Sentinel ---------------------------------------------------------------------------------
@dataclass
class RedisSentinelSet:
    """One primary, two replicas and three sentinels watching service ``service``."""

    servers: list[RedisProcess]
    sentinels: list[RedisProcess]
    service: str = SENTINEL_SERVICE
    sentinel_dirs: list[Path] = field(default_factory=list)
    directory: Path | None = None  # where a rebuild puts its fresh processes
    rebuilds: int = 0

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def primary(self) -> RedisProcess:
        """The data node the sentinels name as primary now."""
        for s in self.sentinels:
            if s.process.poll() is None:
                _host, port = _cmd(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return next(n for n in self.servers if n.port == int(port))
        raise LookupError("no sentinel alive")

    def replicas(self) -> list[RedisProcess]:
        primary = self.primary()
        return [n for n in self.servers if n is not primary]

    def healthy(self) -> bool:
        """Every process up; the named primary is a primary with two synced replicas, and each
        sentinel knows the two others and both replicas."""
        if any(p.process.poll() is not None for p in [*self.servers, *self.sentinels]):
            return False
        primary = self.primary()
        info = _info(primary.port, "replication")
        if info.get("role") != "master" or _replicas_online(primary.port) != 2:
            return False
        for r in self.replicas():
            if _info(r.port, "replication").get("master_link_status") != "up":
                return False
        for s in self.sentinels:
            state = _cmd(s.port, "SENTINEL", "MASTER", self.service)
            if not isinstance(state, dict):
                state = dict(zip(state[::2], state[1::2], strict=True))
            if int(state.get("num-other-sentinels", 0)) != 2 or int(state.get("num-slaves", 0)) < 2:
                return False
            if "down" in str(state.get("flags", "")):
                return False
            if int(str(state.get("port"))) != primary.port:
                return False
        return True

    def flush(self) -> None:
        _cmd(self.primary().port, "FLUSHALL")

    def heal(self, timeout: float = 60) -> None:
        """Restart dead data nodes (the sentinels turn them into replicas); wait until whole.
        A set that does not come back whole (sentinels still electing on a loaded machine) is
        replaced by a fresh one, so one slow failover cannot fail every later test."""
        try:
            primary = self.primary()
            for i, n in enumerate(self.servers):
                if n.process.poll() is not None:
                    self.servers[i] = n = _restart(n)
                if n is not primary and _info(n.port, "replication").get("role") == "master":
                    # What the sentinels do within seconds (a restarted or demoted primary
                    # becomes a replica of the new one), done now so the next test need not wait.
                    _cmd(n.port, "REPLICAOF", "127.0.0.1", str(primary.port))
            wait_until(
                self.healthy, timeout=timeout, interval=0.1, what="redis sentinel set healthy"
            )
        except (TimeoutError, LookupError, redis.RedisError):
            if self.directory is None:
                raise
            self.rebuild()

    def ensure_whole(self) -> None:
        """Heal the set when an earlier test left it broken; a no-op when it is whole."""
        try:
            whole = self.healthy()
        except (LookupError, redis.RedisError):
            whole = False
        if not whole:
            self.heal()

    def rebuild(self) -> None:
        """Stop every process and start a fresh set in place (new ports: read ``url`` again)."""
        assert self.directory is not None
        self.stop()
        self.rebuilds += 1
        fresh = start_sentinel_set(self.directory / f"rebuild-{self.rebuilds}", self.service)
        self.servers[:] = fresh.servers
        self.sentinels[:] = fresh.sentinels

    def stop(self) -> None:
        for p in [*self.sentinels, *self.servers]:
            p.stop()


def _start_sentinel(directory: Path, primary_port: int, service: str) -> RedisProcess:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {service} 127.0.0.1 {primary_port} 2\n"
        f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {service} 10000\n"
        f"sentinel parallel-syncs {service} 2\n"
    )
    proc = subprocess.Popen(
        [redis_server_binary(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    node = RedisProcess(port=port, directory=directory, process=proc)
    wait_until(lambda: node.client().ping(), timeout=10, what=f"sentinel on {port}")
    return node


def start_sentinel_set(directory: Path, service: str = SENTINEL_SERVICE) -> RedisSentinelSet:
    """Primary, two replicas, three sentinels (quorum 2); waits until all know each other."""
    servers: list[RedisProcess] = []
    sentinels: list[RedisProcess] = []
    try:
        primary = start_redis(directory / "data-0")
        servers.append(primary)
        for i in (1, 2):
            servers.append(
                start_redis(directory / f"data-{i}", "--replicaof", "127.0.0.1", str(primary.port))
            )
        for i in range(3):
            sentinels.append(_start_sentinel(directory / f"sentinel-{i}", primary.port, service))
        group = RedisSentinelSet(
            servers=servers, sentinels=sentinels, service=service, directory=directory
        )
        wait_until(group.healthy, timeout=60, interval=0.1, what="redis sentinel set healthy")
        return group
    except BaseException:
        for p in [*sentinels, *servers]:
            p.stop()
        raise


# --- fixtures (registered through tests/conftest.py's pytest_plugins) -------------------------
@contextmanager
def _running(obj: RedisClusterSet | RedisSentinelSet) -> Iterator[None]:
    try:
        yield
    finally:
        obj.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterSet]:
    """A 6-node Redis Cluster for the whole session."""
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    with _running(cluster):
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelSet]:
    """A Sentinel-managed primary with two replicas for the whole session."""
    group = start_sentinel_set(tmp_path_factory.mktemp("redis-sentinel"))
    with _running(group):
        yield group


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterSet) -> str:
    """The cluster's URL, every primary flushed first."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_sentinel_url(redis_sentinel: RedisSentinelSet) -> str:
    """The sentinel set's URL, the primary flushed first (the set healed if a drill broke it)."""
    redis_sentinel.ensure_whole()
    redis_sentinel.flush()
    return redis_sentinel.url
