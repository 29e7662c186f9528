"""Container smoke test: build the base, gateway and embedding images, run them with Redis on a
podman network, wait for /readyz through the images' own healthcheck, round-trip a fact.

Slow (image builds): run by `make test-containers`, which CI calls after `make test`.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hivemind_common.models_paths import default_embedding_dir
from support.gateway import create_api_key
from support.waiting import free_port, wait_until

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(1800)]

BASE = "localhost/hivemind-base:bookworm"
REDIS_IMAGE = "localhost/hivemind-redis:smoke"
TOKEN = "smoke-internal-token-not-secret"
REDIS_PASSWORD = "smoke-redis-password-not-secret"


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed: {result.stderr[-2000:]}")
    return result


def build(repo: Path) -> None:
    """Base image, gateway and embedding images (wheelhouse), and a Redis image on the base."""
    env = {**os.environ, "BASE_IMAGE": BASE}
    for cmd in (
        ["deploy/images/build-base.sh"],
        ["deploy/images/build.sh", "gateway", "embedding"],
    ):
        result = subprocess.run(
            ["bash", *cmd], cwd=repo, env=env, capture_output=True, text=True, timeout=1500
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    podman(
        "build", "-q", "--build-arg", f"BASE_IMAGE={BASE}", "-t", REDIS_IMAGE,
        "-f", str(repo / "deploy/images/redis.Containerfile"), str(repo / "deploy/images"),
        timeout=600,
    )  # fmt: skip


@dataclass
class Suite:
    gateway_url: str
    embedding_url: str
    redis_url: str  # from the host
    names: dict[str, str]


@pytest.fixture(scope="module")
def suite(repo: Path) -> Iterator[Suite]:
    build(repo)
    tag = uuid.uuid4().hex[:8]
    network = f"hivemind-smoke-{tag}"
    names = {s: f"smoke-{s}-{tag}" for s in ("redis", "embedding", "gateway")}
    ports = {s: free_port() for s in names}
    podman("network", "create", network)
    try:
        podman(
            "run", "-d", "--name", names["redis"], "--network", network,
            "-p", f"127.0.0.1:{ports['redis']}:6379", REDIS_IMAGE,
            "redis-server", "--bind", "0.0.0.0", "--requirepass", REDIS_PASSWORD,
            "--appendonly", "yes", "--maxmemory-policy", "noeviction",
        )  # fmt: skip
        redis_in_net = f"redis://:{REDIS_PASSWORD}@{names['redis']}:6379/0"
        common = [
            "-e",
            f"HIVEMIND_INTERNAL_TOKEN={TOKEN}",
            "-e",
            f"HIVEMIND_REDIS_URL={redis_in_net}",
        ]
        model = default_embedding_dir()
        podman(
            "run", "-d", "--name", names["embedding"], "--network", network,
            "-p", f"127.0.0.1:{ports['embedding']}:8081", *common,
            "-v", f"{model}:/models/all-minilm-l6-v2:ro",
            "-e", "HIVEMIND_EMBEDDING_MODEL_DIR=/models/all-minilm-l6-v2",
            "-e", "HIVEMIND_EMBEDDING_MODEL_ID=all-minilm-l6-v2",
            "localhost/hivemind-embedding:latest",
        )  # fmt: skip
        podman(
            "run", "-d", "--name", names["gateway"], "--network", network,
            "-p", f"127.0.0.1:{ports['gateway']}:8090", *common,
            "-e", f"HIVEMIND_EMBEDDING_URL=http://{names['embedding']}:8081",
            "-e", "HIVEMIND_INFERENCE_URL=http://127.0.0.1:9",
            "-e", "HIVEMIND_TRAINER_URL=http://127.0.0.1:9",
            "localhost/hivemind-gateway:latest",
        )  # fmt: skip
        yield Suite(
            gateway_url=f"http://127.0.0.1:{ports['gateway']}",
            embedding_url=f"http://127.0.0.1:{ports['embedding']}",
            redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{ports['redis']}/0",
            names=names,
        )
    finally:
        for service in ("gateway", "embedding"):
            logs = podman("logs", "--tail", "30", names[service], check=False)
            print(f"--- {service} logs ---\n{logs.stdout}{logs.stderr}")  # shown on failure
        podman("rm", "-f", "-v", *names.values(), check=False)
        podman("network", "rm", "-f", network, check=False)


def healthy(name: str) -> bool:
    """The image's own HEALTHCHECK (GET /readyz inside the container) passes."""
    return podman("healthcheck", "run", name, check=False).returncode == 0


def test_images_run_as_a_user_and_carry_a_readyz_healthcheck(suite: Suite) -> None:
    for service in ("gateway", "embedding"):
        config = json.loads(
            podman("image", "inspect", f"localhost/hivemind-{service}:latest").stdout
        )
        cfg = config[0]["Config"]
        assert cfg["User"] == "hivemind"
        assert config[0]["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/hivemind-healthcheck"]
        assert "/data" in cfg["Volumes"]


def test_the_gateway_image_carries_no_torch(suite: Suite) -> None:
    probe = "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
    result = podman(
        "run", "--rm", "--entrypoint", "python", "localhost/hivemind-gateway:latest", "-c", probe,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, "torch is installed in the gateway image"


def test_containers_become_ready_and_a_fact_round_trips_through_the_gateway(suite: Suite) -> None:
    for service in ("embedding", "gateway"):
        wait_until(
            lambda s=service: healthy(suite.names[s]),  # type: ignore[misc]
            timeout=240, interval=1.0, what=f"{service} container healthy",
        )  # fmt: skip
    assert httpx.get(f"{suite.gateway_url}/readyz", timeout=10).status_code == 200
    key = create_api_key(suite.redis_url, tenant="smoke", role="write")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=suite.gateway_url, headers=headers, timeout=60) as client:
        put = client.put("/v1/facts/deploy.smoke", json={"value": "containers talk to Redis"})
        assert put.status_code in (200, 201), put.text
        got = client.get("/v1/facts/deploy.smoke")
        assert got.status_code == 200, got.text
        assert got.json()["value"] == "containers talk to Redis"
        # The gateway container reaches the embedding container by name on the podman network.
        emb = client.post("/v1/embeddings", json={"input": ["hello"], "model": "all-minilm-l6-v2"})
        assert emb.status_code == 200, emb.text
        assert len(emb.json()["data"][0]["embedding"]) == 384
    assert client.is_closed
    no_key = httpx.get(f"{suite.gateway_url}/v1/facts/deploy.smoke", timeout=10)
    assert no_key.status_code == 401


def test_two_containers_on_one_network_resolve_each_other_by_name(repo: Path) -> None:
    """The probe setup-containers.sh runs: without the backend's DNS (the CNI dnsname plugin or
    aardvark-dns) the services cannot find Redis or each other by name."""
    result = subprocess.run(
        ["bash", "scripts/probe-container-dns.sh"],
        cwd=repo, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "container name resolution works" in result.stdout
