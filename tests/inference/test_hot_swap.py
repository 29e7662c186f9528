"""Hot-swap: load beside, smoke-test, switch, drain; failures leave the serving copy alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from inference.serving import running_inference

from hivemind_common import keys

pytestmark = pytest.mark.slow
VERSION = "x-hivemind-model-version"
CHAT = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture
def own_inference(redis_url: str, internal_token: str) -> Iterator[httpx.Client]:
    """A private server: these tests change what it serves."""
    with running_inference(internal_token, redis_url, max_queue=64) as url:
        headers = {"Authorization": f"Bearer {internal_token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            yield client


def _version(client: httpx.Client) -> str:
    return str(client.get("/v1/models").json()["data"][0]["version"])


def test_a_good_swap_switches_version_everywhere(
    own_inference: httpx.Client, gguf_copies: dict[str, Path], redis_url: str
) -> None:
    r = own_inference.post(
        "/admin/models/default/load", json={"gguf": str(gguf_copies["good"]), "version": "v2"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "v2" and body["previous_version"] == "base"
    assert body["swap_ms"] > 0
    assert _version(own_inference) == "v2"
    chat = own_inference.post("/v1/chat/completions", json=CHAT)
    assert chat.headers[VERSION] == "v2"
    admin = own_inference.get("/admin/models").json()["data"][0]
    assert admin["gguf"] == str(gguf_copies["good"]) and admin["queue_depth"] == 0
    served = redis.Redis.from_url(redis_url, decode_responses=True)
    assert served.get(keys.served_model_version("default")) == "v2"
    exposed = own_inference.get("/metrics").text
    assert 'hivemind_inference_swaps_total{model="default",outcome="ok"}' in exposed
    assert 'hivemind_inference_served_version_info{model="default",version="v2"} 1.0' in exposed
    assert 'hivemind_inference_served_version_info{model="default",version="base"}' not in exposed


def test_a_corrupt_gguf_fails_with_a_reason_and_keeps_serving(
    own_inference: httpx.Client, gguf_copies: dict[str, Path]
) -> None:
    r = own_inference.post(
        "/admin/models/default/load",
        json={"gguf": str(gguf_copies["corrupt"]), "version": "broken"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "model_load_failed"
    assert "could not load" in r.json()["detail"]
    assert _version(own_inference) == "base"
    assert own_inference.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_a_missing_file_or_a_reused_version_is_refused(own_inference: httpx.Client) -> None:
    missing = own_inference.post(
        "/admin/models/default/load", json={"gguf": "/nowhere/x.gguf", "version": "v9"}
    )
    assert missing.status_code == 400 and missing.json()["detail"].startswith("gguf file")
    reused = own_inference.post(
        "/admin/models/default/load", json={"gguf": "/nowhere/x.gguf", "version": "base"}
    )
    assert reused.status_code == 409
    bad = own_inference.post("/admin/models/default/load", json={"gguf": "x", "version": "a b"})
    assert bad.status_code == 422
    assert _version(own_inference) == "base"


async def test_no_request_fails_while_swapping_and_in_flight_ones_finish_on_the_old_copy(
    own_inference: httpx.Client, gguf_copies: dict[str, Path], internal_token: str
) -> None:
    base = str(own_inference.base_url)
    headers = {"Authorization": f"Bearer {internal_token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        statuses: list[int] = []
        versions: set[str] = set()
        swapped = asyncio.Event()

        async def traffic() -> None:
            while not swapped.is_set():
                r = await client.post("/v1/chat/completions", json=CHAT)
                statuses.append(r.status_code)
                versions.add(r.headers.get(VERSION, "?"))

        async def long_stream() -> tuple[str, str | None]:
            body = {**CHAT, "max_tokens": 24, "stream": True, "temperature": 0.7, "seed": 1}
            finish = None
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                version = r.headers[VERSION]
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        choice = json.loads(line[6:])["choices"]
                        finish = choice[0]["finish_reason"] if choice else finish
            return version, finish

        workers = [asyncio.create_task(traffic()) for _ in range(3)]
        stream = asyncio.create_task(long_stream())
        swap = await client.post(
            "/admin/models/default/load", json={"gguf": str(gguf_copies["good"]), "version": "v2"}
        )
        after = await client.post("/v1/chat/completions", json=CHAT)
        swapped.set()
        await asyncio.gather(*workers)
        stream_version, finish = await stream
    assert swap.status_code == 200, swap.text
    assert statuses and all(s == 200 for s in statuses)
    assert stream_version == "base" and finish in ("stop", "length")
    assert after.headers[VERSION] == "v2"
    assert versions <= {"base", "v2"}


async def test_a_swap_answers_once_the_new_copy_serves_while_the_old_one_still_drains(
    gguf_copies: dict[str, Path], internal_token: str
) -> None:
    from hivemind_inference.registry import LoadedModels
    from hivemind_inference.settings import InferenceSettings

    settings = InferenceSettings(
        internal_token=internal_token,
        n_ctx=512,
        threads=1,
        publish_served_version=False,
        follow_registry=False,
    )
    models = LoadedModels(settings)
    await models.load_all()
    try:
        old = models.slots["default"].current
        old.acquire()  # a request still running on the old copy
        result = await asyncio.wait_for(
            models.swap("default", gguf=gguf_copies["good"], lora=None, version="v2"), 120
        )
        assert result.version == "v2" and result.draining == 1
        assert models.slots["default"].current.version == "v2"
        assert old.llama is not None and models.draining  # kept until its request ends
        old.release()
        await asyncio.wait_for(asyncio.gather(*models.draining), 60)
        assert old.llama is None and not models.draining
    finally:
        await models.close()
