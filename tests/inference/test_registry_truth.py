"""Inference serves what the model registry says serves: at start-up and after any drift."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest
import redis
from inference.serving import running_inference

from hivemind_common import keys
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_common.models_paths import default_llm_gguf
from support.waiting import wait_until

pytestmark = pytest.mark.slow
VERSION = "x-hivemind-model-version"
CHAT = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2, "temperature": 0}


async def _exported_and_serving(redis_client: object, data_dir: Path, version: str) -> Path:
    """A version exported to its own GGUF (a copy of the shipped one) and marked serving."""
    reg = ModelRegistry(redis_client, data_dir)  # type: ignore[arg-type]
    folder = reg.version_dir("default", version)
    folder.mkdir(parents=True)
    gguf = folder / "model-Q8_0.gguf"
    shutil.copyfile(default_llm_gguf(), gguf)
    reg.write_manifest("default", version, {"serve": {"gguf": str(gguf), "lora": None}})
    await reg.register(ModelVersion(name="default", version=version))
    await reg.record_files("default", version)
    await reg.mark_serving("default", version)
    return gguf


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120)


async def test_a_restarted_inference_serves_the_registry_version_not_the_configured_base(
    redis_client: object, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    gguf = await _exported_and_serving(redis_client, data_dir, "v7")
    with (
        running_inference(internal_token, redis_url, data_dir=data_dir) as url,
        _client(url, internal_token) as client,
    ):
        card = client.get("/v1/models").json()["data"][0]
        chat = client.post("/v1/chat/completions", json=CHAT)
        admin = client.get("/admin/models").json()["data"][0]
    assert card["version"] == "v7"
    assert chat.status_code == 200 and chat.headers[VERSION] == "v7"
    assert admin["gguf"] == str(gguf)
    served = redis.Redis.from_url(redis_url, decode_responses=True)
    assert served.get(keys.served_model_version("default")) == "v7"


async def test_an_unloadable_registry_version_falls_back_to_the_base_and_says_so(
    redis_client: object, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    gguf = await _exported_and_serving(redis_client, data_dir, "v8")
    gguf.write_bytes(b"GGUF but not really")  # its sha256 no longer matches the manifest
    with (
        running_inference(internal_token, redis_url, data_dir=data_dir) as url,
        _client(url, internal_token) as client,
    ):
        card = client.get("/v1/models").json()["data"][0]
        exposed = client.get("/metrics").text
    assert card["version"] == "base"  # it serves rather than crash-looping
    assert 'hivemind_inference_registry_agrees{model="default"} 0.0' in exposed


async def test_the_reconciler_swaps_in_the_registry_version_when_the_two_disagree(
    redis_client: object, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    with (
        running_inference(
            internal_token, redis_url, data_dir=data_dir, reconcile_interval_s=0.2
        ) as url,
        _client(url, internal_token) as client,
    ):
        assert client.get("/v1/models").json()["data"][0]["version"] == "base"
        # a deploy that updated the registry and died before inference swapped
        await _exported_and_serving(redis_client, data_dir, "v9")

        def repaired() -> bool:
            return bool(client.get("/v1/models").json()["data"][0]["version"] == "v9")

        await asyncio.to_thread(wait_until, repaired, timeout=90, what="the reconciler")
        chat = client.post("/v1/chat/completions", json=CHAT)
        exposed = client.get("/metrics").text
    assert chat.headers[VERSION] == "v9"
    assert 'hivemind_inference_reconcile_total{model="default",outcome="repaired"}' in exposed
    assert 'hivemind_inference_registry_agrees{model="default"} 1.0' in exposed


async def test_the_reconciler_leaves_a_model_alone_while_a_deploy_holds_its_lock(
    redis_client: object, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    lock = redis.Redis.from_url(redis_url, decode_responses=True)
    with (
        running_inference(
            internal_token, redis_url, data_dir=data_dir, reconcile_interval_s=0.2
        ) as url,
        _client(url, internal_token) as client,
    ):
        lock.set(keys.model_deploy_lock("default"), "a-deployer", px=120_000)
        await _exported_and_serving(redis_client, data_dir, "v10")

        def skipped() -> bool:
            text = client.get("/metrics").text
            return 'hivemind_inference_reconcile_total{model="default",outcome="busy"}' in text

        await asyncio.to_thread(wait_until, skipped, timeout=60, what="a busy reconcile")
        assert client.get("/v1/models").json()["data"][0]["version"] == "base"
        lock.delete(keys.model_deploy_lock("default"))

        def repaired() -> bool:
            return bool(client.get("/v1/models").json()["data"][0]["version"] == "v10")

        await asyncio.to_thread(wait_until, repaired, timeout=90, what="the repair")
