"""Kill drills on a real inference process: kill -9, restart, and it serves the registry's version.

Inference runs as its own process (``python -m hivemind_inference``), as under ``make run``; the
gateway runs in the test. After every kill the test starts the process again on the same port,
the way the supervisor of ``hivemind up`` does, and checks what the gateway answers with.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hivemind_common.model_deploy import deploy_version
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_common.models_paths import default_llm_gguf
from support.gateway import running_gateway
from support.waiting import await_until, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
VERSION = "x-hivemind-model-version"
CHAT = {
    "model": "default",
    "messages": [{"role": "user", "content": "Say hi"}],
    "max_tokens": 2,
    "temperature": 0,
    "hivemind": {"rag": False, "capture": False},
}


class InferenceProcess:
    """``python -m hivemind_inference`` on a fixed port; killed with SIGKILL, started again."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hivemind_inference"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "inference exited"
            return httpx.get(self.url + "/readyz", timeout=2.0).status_code == 200

        wait_until(ready, timeout=120, interval=0.1, what="inference ready")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no lifespan, no clean-up
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@contextmanager
def inference_process(redis_url: str, token: str, data_dir: Path) -> Iterator[InferenceProcess]:
    env = {
        **os.environ,
        "HIVEMIND_REDIS_URL": redis_url,
        "HIVEMIND_INTERNAL_TOKEN": token,
        "HIVEMIND_DATA_DIR": str(data_dir),
        "HIVEMIND_N_CTX": "1024",
        "HIVEMIND_THREADS": "1",
        "HIVEMIND_RECONCILE_INTERVAL_S": "0.5",
        "HIVEMIND_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    env["HIVEMIND_PORT"] = str(port)
    process = InferenceProcess(env, port)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def _exported(reg: ModelRegistry, version: str) -> None:
    folder = reg.version_dir("default", version)
    folder.mkdir(parents=True)
    gguf = folder / "model-Q8_0.gguf"
    shutil.copyfile(default_llm_gguf(), gguf)
    reg.write_manifest("default", version, {"serve": {"gguf": str(gguf), "lora": None}})
    await reg.register(ModelVersion(name="default", version=version))
    await reg.record_files("default", version)


def _admin(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )


async def test_after_kill_9_and_restart_the_gateway_answers_with_the_registry_version(
    redis_client: object, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    reg = ModelRegistry(redis_client, data_dir)  # type: ignore[arg-type]
    await _exported(reg, "v1")
    with inference_process(redis_url, internal_token, data_dir) as inference:
        async with _admin(inference.url, internal_token) as admin:
            await deploy_version(registry=reg, client=admin, name="default", version="v1")
        with running_gateway(
            redis_url,
            internal_token,
            data_dir,
            inference_url=inference.url,
            embedding_url="http://127.0.0.1:9",
            trainer_url="http://127.0.0.1:9",
        ) as gateway:
            client = await asyncio.to_thread(gateway.client)  # makes its key with asyncio.run
            before = await asyncio.to_thread(client.post, "/v1/chat/completions", json=CHAT)
            assert before.status_code == 200 and before.headers[VERSION] == "v1"
            inference.kill9()
            await asyncio.to_thread(inference.start)
            after = await asyncio.to_thread(client.post, "/v1/chat/completions", json=CHAT)
            versions = await asyncio.to_thread(client.get, "/v1/models/versions")
            client.close()
    assert after.status_code == 200, after.text
    assert after.headers[VERSION] == "v1"
    serving = [v for v in versions.json()["data"] if v["status"] == "serving"]
    assert [v["version"] for v in serving] == ["v1"]


async def test_kill_9_during_a_swap_converges_on_one_version_both_sides_agree_on(
    redis_client: object, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    reg = ModelRegistry(redis_client, data_dir)  # type: ignore[arg-type]
    await _exported(reg, "v1")
    await _exported(reg, "v2")
    with inference_process(redis_url, internal_token, data_dir) as inference:
        async with _admin(inference.url, internal_token) as admin:
            await deploy_version(registry=reg, client=admin, name="default", version="v1")
            deploy = asyncio.create_task(
                deploy_version(
                    registry=reg, client=admin, name="default", version="v2", settle_s=180
                )
            )

            async def swapping() -> bool:
                if deploy.done():
                    return True
                r = await admin.get("/admin/models")
                return bool(r.json()["data"][0]["swapping_to"] == "v2")

            await await_until(swapping, timeout=120, interval=0.005, what="the swap")
            hit = not deploy.done()
            inference.kill9()
            await asyncio.to_thread(inference.start)
            result = await asyncio.wait_for(deploy, 240)
            served = (await admin.get("/v1/models")).json()["data"][0]["version"]
        pointers = await reg.pointers("default")
        statuses = {mv.version: mv.status for mv in await reg.list("default")}
    assert hit, "the kill landed after the swap: the drill did not test a swap"
    assert result.version == "v2"
    assert pointers == {"serving": "v2", "previous": "v1"} and served == "v2"
    assert statuses == {"v1": "previous", "v2": "serving"}
