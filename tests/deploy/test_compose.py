"""compose.yaml, as a real compose implementation resolves it, runs the same suite as the units:
every service on its registry port (loopback only), healthchecks, healthy-dependency ordering."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hivemind_common.hosts import DEFAULT_PORTS, SERVICES
from support.quadlet_check import compose_binary


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(compose_binary()), "-f", "compose.yaml", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=repo, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_service_runs_on_its_port_published_on_loopback_only(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in SERVICES:
        svc = services[name]
        port = DEFAULT_PORTS[name]
        assert svc["image"] == f"localhost/hivemind-{name}:latest"
        assert svc["environment"]["HIVEMIND_PORT"] == str(port)
        assert [(p["host_ip"], p["target"]) for p in svc["ports"]] == [("127.0.0.1", port)]
        assert svc["healthcheck"]["test"] == ["CMD", "/usr/local/bin/hivemind-healthcheck"]
        for peer in SERVICES:
            url = svc["environment"][f"HIVEMIND_{peer.upper()}_URL"]
            assert url == f"http://{peer}:{DEFAULT_PORTS[peer]}"
    for extra in ("prometheus", "grafana"):
        assert all(p["host_ip"] == "127.0.0.1" for p in services[extra]["ports"])
    assert "ports" not in services["redis"]  # Redis stays on the compose network


def test_services_start_only_after_their_dependencies_are_healthy(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in SERVICES:
        conditions = {d["condition"] for d in services[name]["depends_on"].values()}
        assert conditions == {"service_healthy"}, name
    assert set(services["gateway"]["depends_on"]) == {"redis", "embedding", "inference"}
    assert set(services["mcp"]["depends_on"]) == {"gateway"}
    assert "healthcheck" in services["redis"]


def test_compose_redis_never_evicts_and_keeps_an_aof(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    flags = dict(zip(command[2::2], command[3::2], strict=False))
    assert command[:2] == ["redis-server", "/run/secrets/redis_auth"]
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--appendonly"] == "yes"
    assert flags["--protected-mode"] == "yes"


def test_every_name_a_service_dials_is_an_alias_on_the_shared_network(
    compose: dict[str, Any],
) -> None:
    """Names resolve through the network's DNS under either podman backend (aardvark-dns or the
    CNI dnsname plugin) and Docker only as explicit aliases on one network, not by luck."""
    services = compose["services"]
    aliases = {
        name: set((svc.get("networks") or {}).get("hivemind", {}).get("aliases") or [])
        for name, svc in services.items()
    }
    for name, svc in services.items():
        assert list(svc.get("networks") or {}) == ["hivemind"], name
        assert name in aliases[name], f"{name} has no alias {name!r} on the hivemind network"
    dialled = {"redis", "prometheus"}  # the Redis URL (compose.env) and Grafana's datasource
    for name in SERVICES:
        for peer in SERVICES:
            host = services[name]["environment"][f"HIVEMIND_{peer.upper()}_URL"].split("//")[1]
            dialled.add(host.split(":")[0])
    assert dialled <= {a for names in aliases.values() for a in names}
