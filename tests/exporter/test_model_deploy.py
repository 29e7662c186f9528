"""Deploys against a real inference service on the shipped SmolLM2."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from inference.serving import running_inference

from hivemind_common import keys
from hivemind_common.errors import Conflict, UpstreamError
from hivemind_common.model_deploy import deploy_version, rollback_model
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_common.models_paths import default_llm_gguf

pytestmark = pytest.mark.slow


@pytest.fixture
def inference_url(redis_url: str, internal_token: str) -> Iterator[str]:
    with running_inference(internal_token, redis_url) as url:
        yield url


@pytest.fixture
async def client(inference_url: str, internal_token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {internal_token}"}
    async with httpx.AsyncClient(base_url=inference_url, headers=headers, timeout=60) as c:
        yield c


async def _served(client: httpx.AsyncClient) -> str:
    return str((await client.get("/v1/models")).json()["data"][0]["version"])


async def _exported(reg: ModelRegistry, version: str, *, corrupt: bool = False) -> None:
    """A version whose export chose a GGUF of its own folder (a copy of the shipped model)."""
    directory = reg.version_dir("default", version)
    directory.mkdir(parents=True)
    src = default_llm_gguf()
    target = directory / "model-Q8_0.gguf"
    if corrupt:
        target.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    else:
        shutil.copyfile(src, target)
    reg.write_manifest("default", version, {"serve": {"gguf": str(target), "lora": None}})
    await reg.register(ModelVersion(name="default", version=version))
    await reg.record_files("default", version)


async def test_deploy_swaps_inference_and_marks_the_version_serving(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    result = await deploy_version(registry=reg, client=client, name="default", version="v1")
    assert result.version == "v1" and result.swap_ms and result.swap_ms > 0
    assert await _served(client) == "v1"
    assert (await reg.get("default", "v1")).status == "serving"
    assert await redis_client.get(keys.model_deploy_lock("default")) is None
    again = await deploy_version(registry=reg, client=client, name="default", version="v1")
    assert again.already_serving


async def test_a_deploy_whose_answer_is_lost_is_confirmed_with_inference_not_marked_failed(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    # the load call gives up long before inference has loaded and smoke-tested the copy
    result = await deploy_version(
        registry=reg, client=client, name="default", version="v1", timeout=0.01
    )
    assert result.version == "v1"
    assert (await reg.get("default", "v1")).status == "serving"
    assert await _served(client) == "v1"
    again = await deploy_version(registry=reg, client=client, name="default", version="v1")
    assert again.already_serving


async def test_a_failed_swap_marks_the_version_failed_and_keeps_serving(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    await _exported(reg, "v2", corrupt=True)
    await deploy_version(registry=reg, client=client, name="default", version="v1")
    with pytest.raises(UpstreamError):
        await deploy_version(registry=reg, client=client, name="default", version="v2")
    failed = await reg.get("default", "v2")
    assert failed.status == "failed" and failed.error
    assert await reg.pointers("default") == {"serving": "v1"}
    assert await _served(client) == "v1"


async def test_rollback_serves_the_previous_version_again(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    await _exported(reg, "v2")
    await deploy_version(registry=reg, client=client, name="default", version="v1")
    await deploy_version(registry=reg, client=client, name="default", version="v2")
    assert await _served(client) == "v2"
    result = await rollback_model(registry=reg, client=client, name="default")
    assert result.version == "v1" and result.previous_version == "v2"
    assert await _served(client) == "v1"
    assert await reg.pointers("default") == {"serving": "v1", "previous": "v2"}


async def test_a_file_that_changed_since_export_is_not_deployed(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    with (reg.version_dir("default", "v1") / "model-Q8_0.gguf").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(Conflict):
        await deploy_version(registry=reg, client=client, name="default", version="v1")
    assert await _served(client) == "base"


async def test_rejected_versions_and_concurrent_deploys_are_refused(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    await _exported(reg, "v2")
    await reg.set_status("default", "v2", "rejected")
    with pytest.raises(Conflict):
        await deploy_version(registry=reg, client=client, name="default", version="v2")
    await redis_client.set(keys.model_deploy_lock("default"), "someone-else")
    with pytest.raises(Conflict):
        await deploy_version(registry=reg, client=client, name="default", version="v1")
    assert await _served(client) == "base"


async def test_a_swap_done_before_a_crash_is_recorded_without_swapping_again(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    files = {"gguf": str(reg.version_dir("default", "v1") / "model-Q8_0.gguf"), "lora": None}
    swapped = await client.post("/admin/models/default/load", json={**files, "version": "v1"})
    assert swapped.status_code == 200  # ...and the deploying worker died before the registry
    loaded_at = (await client.get("/admin/models")).json()["data"][0]["loaded_at"]
    result = await deploy_version(registry=reg, client=client, name="default", version="v1")
    assert result.already_serving and result.swap_ms is None
    assert (await reg.get("default", "v1")).status == "serving"
    assert (await client.get("/admin/models")).json()["data"][0]["loaded_at"] == loaded_at


async def test_retention_after_a_deploy_keeps_serving_previous_pinned_and_newer_ready_only(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    reg = ModelRegistry(redis_client, data_dir)

    async def light(version: str, status: str = "ready") -> None:
        reg.version_dir("default", version).mkdir(parents=True)
        (reg.version_dir("default", version) / "adapter.gguf").write_bytes(b"x" * 1024)
        await reg.register(ModelVersion(name="default", version=version))
        if status != "ready":
            await reg.set_status("default", version, status)  # type: ignore[arg-type]

    await light("old-ready")
    await light("rejected", "rejected")
    await light("failed-pinned", "failed")
    await reg.pin("default", "failed-pinned")
    await _exported(reg, "v1")
    await _exported(reg, "v2")
    await deploy_version(registry=reg, client=client, name="default", version="v1")
    await light("in-flight")  # trained after v1 and not deployed yet: its export may run
    await deploy_version(registry=reg, client=client, name="default", version="v2")
    kept = {mv.version: mv.status for mv in await reg.list("default")}
    assert kept == {
        "failed-pinned": "failed",
        "v1": "previous",
        "v2": "serving",
        "in-flight": "ready",
    }
    for gone in ("old-ready", "rejected"):
        assert not reg.version_dir("default", gone).exists()
    assert reg.version_dir("default", "failed-pinned").is_dir()


async def test_files_that_failed_their_export_checks_are_never_deployed(
    redis_client, data_dir: Path, client: httpx.AsyncClient
) -> None:
    """The manifest keeps the files an export chose even when its validation failed (to say
    why); a promote of such a version swapped files that had failed validation in."""
    reg = ModelRegistry(redis_client, data_dir)
    await _exported(reg, "v1")
    reg.update_manifest("default", "v1", export={"validation": {"passed": False}})
    with pytest.raises(Conflict, match="export validation"):
        await deploy_version(registry=reg, client=client, name="default", version="v1")
    await _exported(reg, "v2")
    reg.update_manifest("default", "v2", export={"validation": {}})  # it raised before a verdict
    with pytest.raises(Conflict, match="export validation"):
        await deploy_version(registry=reg, client=client, name="default", version="v2")
    await _exported(reg, "v3")
    reg.update_manifest("default", "v3", export={"validation": {"passed": True}},
                        task_eval={"passed": False})  # fmt: skip
    with pytest.raises(Conflict, match="task eval"):
        await deploy_version(registry=reg, client=client, name="default", version="v3")
    assert await _served(client) == "base"
    await _exported(reg, "v4")
    reg.update_manifest("default", "v4", export={"validation": {"passed": True}})
    assert (
        await deploy_version(registry=reg, client=client, name="default", version="v4")
    ).version == "v4"
