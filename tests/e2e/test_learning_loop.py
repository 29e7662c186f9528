"""The whole learning loop on the shipped SmolLM2, in process, with real services.

100 samples go in through the gateway → the trainer's cycle trains and gates a version → the
exporter writes and validates its GGUF files and hot-swaps it into inference → the gateway
answers with the new version, and not one request fails while the swap happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from inference.serving import running_inference

from hivemind_common import keys
from hivemind_common.job_records import get_job
from hivemind_common.model_registry import ModelRegistry
from hivemind_exporter.settings import ExporterSettings
from hivemind_exporter.worker import ExportWorker
from hivemind_trainer.cycle import run_cycle
from hivemind_trainer.data.synthetic import make_chats
from hivemind_trainer.settings import TrainerSettings
from support.gateway import RunningGateway, running_gateway
from support.waiting import await_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]
VERSION_HEADER = "x-hivemind-model-version"


@dataclass
class Traffic:
    """Chat requests through the gateway in a loop, from a thread, until stopped."""

    client: httpx.Client
    statuses: list[int] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            body = {
                "model": "default",
                "messages": [{"role": "user", "content": f"Name a colour ({i})."}],
                "max_tokens": 4,
                "temperature": 0.7,
            }
            try:
                r = self.client.post("/v1/chat/completions", json=body)
                self.statuses.append(r.status_code)
                self.versions.append(r.headers.get(VERSION_HEADER, ""))
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))
            self.stop.wait(0.1)  # paced load (~10/s at most), not a wait for a condition


@pytest.fixture
def stack(
    redis_url: str, internal_token: str, data_dir: Path
) -> Iterator[tuple[RunningGateway, str]]:
    with (
        running_inference(internal_token, redis_url) as inference_url,
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            inference_url=inference_url,
            embedding_url="http://127.0.0.1:9",
            trainer_url="http://127.0.0.1:9",
        ) as gw,
    ):
        gw.key(role="write"), gw.key(role="read")  # made here: the test body runs in a loop
        yield gw, inference_url


async def test_hundred_samples_are_trained_gated_exported_and_served_without_a_failed_request(
    stack: tuple[RunningGateway, str],
    redis_client,
    redis_url: str,
    internal_token: str,
    data_dir: Path,
) -> None:
    gw, inference_url = stack
    t0 = time.perf_counter()
    writer = gw.client(role="write")
    await redis_client.hset(keys.tenant_settings("acme"), "share_training", "1")  # acme opted in
    for chat in make_chats(100, seed=11):
        r = writer.post("/v1/learning/samples", json={"messages": chat, "rating": 1.0})
        assert r.status_code in (200, 201, 202), r.text

    trainer_settings = TrainerSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=internal_token,
        worker_enabled=False,
        threshold=100,
        min_interval_s=0,
        mode="fast",
        seq_len=256,
    )
    # a short run (8 steps): this test is about the deploy path, and an adapter trained on the
    # full 32-step floor sometimes lost its stop token on the smoke prompt (inference refused
    # it, "I'm a chatbot. I'm a chatbot. ..."), failing the deploy for a reason of its own
    cycle = await run_cycle(
        redis_client, trainer_settings, requested_by="e2e", reason="manual",
        overrides={"min_steps": "8", "max_steps": "8"},
    )  # fmt: skip
    assert cycle.status == "exported", cycle.as_dict()
    assert cycle.version is not None
    t_train = time.perf_counter()

    reader = gw.client(role="read")
    traffic = Traffic(client=reader)
    thread = threading.Thread(target=traffic.run, daemon=True)
    exporter_settings = ExporterSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=internal_token,
        worker_enabled=False,
        reclaim_idle_ms=60_000,
        inference_url=inference_url,
        # This test is about the deploy path (no failed request during the swap). Whether a
        # fast-mode adapter on 100 synthetic chats answers better than the base is the task
        # eval's question, tested on its own in tests/exporter/test_served_eval.py.
        task_eval=False,
    )
    headers = {"Authorization": f"Bearer {internal_token}"}
    async with httpx.AsyncClient(base_url=inference_url, headers=headers, timeout=180) as inf:
        worker = ExportWorker(redis=redis_client, settings=exporter_settings, inference=inf)
        thread.start()
        try:
            outcomes = await worker.run_once(block_ms=1_000)
            assert [(o.result, o.version) for o in outcomes] == [("succeeded", cycle.version)], (
                outcomes
            )

            async def new_version_answered() -> bool:
                return traffic.versions.count(str(cycle.version)) >= 3

            # keep the traffic going until it has been answered by the new version too
            await await_until(new_version_answered, timeout=60, what="answers of the new version")
        finally:
            traffic.stop.set()
            thread.join(timeout=60)
    t_done = time.perf_counter()

    assert [(o.result, o.version) for o in outcomes] == [("succeeded", cycle.version)], outcomes
    # no request failed while the new version was loaded and switched in
    assert traffic.errors == [] and traffic.statuses, traffic.errors
    assert set(traffic.statuses) == {200}, traffic.statuses
    after = reader.post(
        "/v1/chat/completions",
        json={"model": "default", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    )
    assert after.status_code == 200 and after.headers[VERSION_HEADER] == cycle.version

    job = await get_job(redis_client, cycle.job_id)
    assert (job.status, job.stage, job.version) == ("succeeded", "done", cycle.version)
    registry = ModelRegistry(redis_client, data_dir)
    assert (await registry.pointers("default"))["serving"] == cycle.version
    manifest = registry.read_manifest("default", cycle.version)
    validation = manifest["export"]["validation"]
    assert validation["passed"] and validation["chat"]["stopped"]
    # the adapter is gated raw on an f16 copy of the base; on the served Q4_1 base it is reported
    assert validation["adapter"]["top1_agreement"] >= 0.98
    assert validation["adapter"]["positions"] >= 400
    assert validation["adapter"]["base"] != Path(manifest["serve"]["gguf"]).name
    assert "top1_agreement" in validation["adapter_on_served_base"]
    # SmolLM2's base is itself quantized (Q4_1): it is served as is, with adapter.gguf, and
    # only what serving needs is written (no merged f16 or quantized copy by default)
    assert manifest["serve"]["lora"].endswith("adapter.gguf")
    assert manifest["export"]["merged_written"] is False and "f16" not in validation
    assert "adapter.gguf" in manifest["files"]
    assert not [f for f in manifest["files"] if f.startswith("model-")]
    listed = reader.get("/v1/models/versions").json()["data"]
    assert [(d["version"], d["status"]) for d in listed] == [(cycle.version, "serving")]
    seen = sorted(set(traffic.versions))
    assert seen == sorted({"base", str(cycle.version)}), seen  # the swap happened under load
    print(  # the stage times, for the test log
        f"e2e: train {t_train - t0:.1f}s, export+deploy {t_done - t_train:.1f}s, "
        f"requests during swap {len(traffic.statuses)}, versions seen {seen}"
    )
