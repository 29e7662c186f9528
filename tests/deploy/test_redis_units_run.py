"""The Redis command line the units render, with the ACL fragment make-secrets.sh writes, starts a
real redis-server: users and rights as documented, nothing evicted, AOF on, default user off."""

from __future__ import annotations

import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hivemind_cli.render import render_node
from hivemind_common.hosts import Registry
from support.redis_servers import redis_server_binary
from support.waiting import free_port, wait_until


def rendered_args(registry: Registry, unit: str, node: str) -> list[str]:
    """The redis-server arguments of a rendered unit's Exec= line."""
    text = render_node(registry, profile="homelab", node=node)[unit]
    line = next(ln for ln in text.splitlines() if ln.startswith("Exec="))
    args = shlex.split(line.removeprefix("Exec="))
    assert args[:2] == ["redis-server", "/run/secrets/redis-auth.conf"]
    return args[2:]


def override(args: list[str], **values: str) -> list[str]:
    """Replace the value after ``--<flag>`` (underscores for dashes); the rest stays as rendered."""
    out = list(args)
    for flag, value in values.items():
        i = out.index("--" + flag.replace("_", "-"))
        out[i + 1] = value
    return out


@pytest.fixture(scope="module")
def secrets_dir(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("redis-secrets") / "secrets"
    subprocess.run(
        ["bash", str(repo / "deploy/redis/make-secrets.sh"), "generate", str(out)],
        check=True, capture_output=True, timeout=60, cwd=repo,
    )  # fmt: skip
    return out


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster_node(
    registry: Registry, secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The c1 unit's redis-server on a loopback port (its announce address kept as rendered)."""
    port = free_port()
    # the unit leaves the cluster bus on client port + 10000: it must fit in 16 bits and be
    # free as well (a taken bus port made the server exit at start, a 60 s wait in CI)
    while port > 55535 or not _bindable(port + 10000):
        port = free_port()
    args = override(
        rendered_args(registry, "hivemind-redis-c1.container", "r720xd"),
        port=str(port), bind="127.0.0.1", cluster_announce_port=str(port),
    )  # fmt: skip
    data = tmp_path_factory.mktemp("redis-c1")
    proc = subprocess.Popen(
        [redis_server_binary(), str(secrets_dir / "redis-auth.conf"), *args, "--dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def answers() -> bool:
            if proc.poll() is not None:  # it exited: stop waiting, say why below
                return True
            out = subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=5
            )
            return "NOAUTH" in out.stdout or "PONG" in out.stdout

        wait_until(answers, timeout=60, interval=0.05, what="redis-server from the unit")
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"redis-server exited ({proc.returncode}): {out[-2000:]}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def login(port: int, secrets_dir: Path, user: str) -> redis.Redis:
    password = (secrets_dir / f"redis-{user}.password").read_text().strip()
    return redis.Redis(port=port, username=user, password=password, decode_responses=True)


def test_the_rendered_cluster_node_keeps_data_and_announces_its_node(
    cluster_node: int, secrets_dir: Path
) -> None:
    admin = login(cluster_node, secrets_dir, "admin")
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    assert admin.config_get("protected-mode") == {"protected-mode": "yes"}
    assert admin.config_get("cluster-announce-ip") == {"cluster-announce-ip": "192.168.1.60"}
    assert admin.info("cluster")["cluster_enabled"] == 1
    assert int(admin.config_get("maxmemory")["maxmemory"]) == 2 * 1024**3


def test_service_user_works_but_cannot_flush_or_administer(
    cluster_node: int, secrets_dir: Path
) -> None:
    service = login(cluster_node, secrets_dir, "hivemind")
    assert service.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        service.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        service.config_get("maxmemory")
    replicator = login(cluster_node, secrets_dir, "replicator")
    with pytest.raises(redis.exceptions.NoPermissionError):
        replicator.get("anything")


def test_the_default_user_is_off(cluster_node: int) -> None:
    no_retry = Retry(NoBackoff(), 0)  # a refusal is the answer; do not ask again
    anonymous = redis.Redis(port=cluster_node, retry=no_retry)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("x")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=cluster_node, password="wrong", retry=no_retry).ping()


def test_the_rendered_sentinel_writes_its_config_once_and_watches_the_primary(
    registry: Registry, secrets_dir: Path, tmp_path: Path
) -> None:
    text = render_node(registry, profile="homelab", node="aurora", redis="sentinel")[
        "hivemind-sentinel-26379.container"
    ]
    line = next(ln for ln in text.splitlines() if ln.startswith("Exec="))
    flag, script = shlex.split(line.removeprefix("Exec="))
    assert flag == "-c"
    port = free_port()
    # What systemd does to the line (%% -> %), then the container paths mapped to this machine.
    script = (
        script.replace("%%", "%")
        .replace("/data/", f"{tmp_path}/")
        .replace("/run/secrets/sentinel-auth.conf", str(secrets_dir / "sentinel-auth.conf"))
        .replace("port 26379", f"port {port}")
        .replace("exec redis-server", f"exec {redis_server_binary()}")
    )
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sentinel = redis.Redis(port=port, decode_responses=True)
        primary = wait_until(
            lambda: sentinel.sentinel_get_master_addr_by_name("hivemind"),
            timeout=60, interval=0.05, what="sentinel answering",
        )  # fmt: skip
        assert tuple(primary) == ("192.168.1.60", 6379)
        conf = (tmp_path / "sentinel.conf").read_text()
        # Sentinel rewrites its file (quoting values) once it runs; the settings stay.
        assert 'sentinel announce-ip "192.168.1.50"' in conf
        assert "sentinel auth-user hivemind sentinel" in conf
    finally:
        proc.terminate()
        proc.wait(timeout=10)
