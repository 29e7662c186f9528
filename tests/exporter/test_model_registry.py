"""The model registry against a real Redis and a real data directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hivemind_common.errors import Conflict, Invalid, NotFound
from hivemind_common.model_registry import ModelRegistry, ModelVersion


async def _add(reg: ModelRegistry, version: str, created_at: float, payload: bytes = b"x") -> None:
    directory = reg.version_dir("default", version)
    directory.mkdir(parents=True)
    (directory / "adapter.gguf").write_bytes(payload)
    reg.write_manifest("default", version, {"base": "smollm2"})
    await reg.register(
        ModelVersion(name="default", version=version, created_at=created_at, metrics={"loss": 1.0})
    )


async def test_registered_versions_are_listed_oldest_first_with_their_metrics(
    redis_client, data_dir: Path
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _add(reg, "v2", 2.0)
    await _add(reg, "v1", 1.0)
    listed = await reg.list("default")
    assert [mv.version for mv in listed] == ["v1", "v2"]
    assert listed[0].status == "ready"
    assert listed[0].public()["metrics"] == {"loss": 1.0}
    assert listed[0].path == str(data_dir / "models" / "default" / "v1")
    assert await reg.names() == ["default"]


async def test_unknown_versions_and_path_like_names_are_refused(redis_client, data_dir) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    with pytest.raises(NotFound):
        await reg.get("default", "nope")
    with pytest.raises(Invalid):
        reg.version_dir("default", "../etc")
    with pytest.raises(Invalid):
        await reg.register(ModelVersion(name="a/b", version="v1"))


async def test_record_files_puts_the_sha256_of_every_file_in_manifest_and_record(
    redis_client, data_dir
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _add(reg, "v1", 1.0, payload=b"gguf-bytes")
    files = await reg.record_files("default", "v1")
    expected = hashlib.sha256(b"gguf-bytes").hexdigest()
    assert files == {"adapter.gguf": expected}
    manifest = json.loads((reg.version_dir("default", "v1") / "manifest.json").read_text())
    assert manifest["files"] == {"adapter.gguf": expected}
    assert manifest["base"] == "smollm2"
    assert (await reg.get("default", "v1")).files == files


async def test_mark_serving_moves_the_old_serving_version_to_previous(
    redis_client, data_dir
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    for i in (1, 2, 3):
        await _add(reg, f"v{i}", float(i))
    await reg.mark_serving("default", "v1")
    await reg.mark_serving("default", "v2")
    assert await reg.pointers("default") == {"serving": "v2", "previous": "v1"}
    await reg.mark_serving("default", "v3")
    statuses = {mv.version: mv.status for mv in await reg.list("default")}
    assert statuses == {"v1": "ready", "v2": "previous", "v3": "serving"}
    # marking the serving version again is a no-op
    assert await reg.mark_serving("default", "v3") == {"serving": "v3", "previous": "v2"}
    assert (await reg.serving("default")).version == "v3"  # type: ignore[union-attr]


async def test_rollback_swaps_serving_and_previous_and_needs_a_previous(
    redis_client, data_dir
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _add(reg, "v1", 1.0)
    await _add(reg, "v2", 2.0)
    await reg.mark_serving("default", "v1")
    with pytest.raises(Conflict):
        await reg.rollback("default")
    await reg.mark_serving("default", "v2")
    await reg.rollback("default")
    assert await reg.pointers("default") == {"serving": "v1", "previous": "v2"}


async def test_status_of_serving_version_cannot_be_overwritten(redis_client, data_dir) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await _add(reg, "v1", 1.0)
    await reg.mark_serving("default", "v1")
    with pytest.raises(Conflict):
        await reg.set_status("default", "v1", "failed", error="boom")
    with pytest.raises(Invalid):
        await reg.set_status("default", "v1", "serving")


async def test_cleanup_never_deletes_serving_or_previous(redis_client, data_dir) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    for i in range(1, 6):
        await _add(reg, f"v{i}", float(i))
    await reg.set_status("default", "v5", "rejected")
    await reg.mark_serving("default", "v1")
    await reg.mark_serving("default", "v2")
    removed = await reg.cleanup("default", keep_recent=1)
    assert sorted(removed) == ["v3", "v4"]
    assert sorted(mv.version for mv in await reg.list("default")) == ["v1", "v2", "v5"]
    for kept in ("v1", "v2", "v5"):
        assert (reg.version_dir("default", kept) / "adapter.gguf").is_file()
    assert not reg.version_dir("default", "v3").exists()
    assert await reg.cleanup("default") == ["v5"]
    assert reg.version_dir("default", "v1").is_dir() and reg.version_dir("default", "v2").is_dir()


async def test_a_cleanup_waits_for_a_deploy_and_never_deletes_what_it_made_serving(
    redis_client, data_dir
) -> None:
    """A cleanup that read the pointers just before a promote made a version serving could
    delete that version: the serving pointer then named a folder that was gone."""
    import asyncio

    from hivemind_common.model_deploy import cleanup_versions, deploy_lock

    reg = ModelRegistry(redis_client, data_dir)
    for i in range(1, 4):
        await _add(reg, f"v{i}", float(i))
    await reg.mark_serving("default", "v1")
    async with deploy_lock(reg, "default"):  # a promote of v3 is under way
        cleaning = asyncio.create_task(cleanup_versions(reg, "default", wait_s=30))
        await asyncio.sleep(0.3)
        assert not cleaning.done()  # it waits for the deploy
        await reg.mark_serving("default", "v3")
    assert await cleaning == ["v2"]
    assert reg.version_dir("default", "v3").is_dir()
    with pytest.raises(Conflict):
        async with deploy_lock(reg, "default"):
            await cleanup_versions(reg, "default", wait_s=0)


async def test_cleanup_sweeps_old_version_folders_no_record_names(redis_client, data_dir) -> None:
    """A trainer killed between saving a version and registering it left the folder behind."""
    import os
    import time

    from hivemind_common.model_registry import new_version_id

    reg = ModelRegistry(redis_client, data_dir)
    await _add(reg, "v1", 1.0)
    await reg.mark_serving("default", "v1")
    old, fresh = new_version_id(time.time() - 7200), new_version_id()
    for version in (old, fresh):
        (reg.version_dir("default", version) / "adapter").mkdir(parents=True)
        (reg.version_dir("default", version) / "adapter" / "weights.bin").write_bytes(b"x")
    cache = reg.model_dir("default") / "base-0123abcd"  # not a version: kept
    cache.mkdir()
    two_hours_ago = time.time() - 7200
    for path in [*reg.version_dir("default", old).rglob("*"), reg.version_dir("default", old)]:
        os.utime(path, (two_hours_ago, two_hours_ago))
    os.utime(cache, (two_hours_ago, two_hours_ago))
    assert await reg.cleanup("default") == [old]
    assert not reg.version_dir("default", old).exists()
    assert reg.version_dir("default", fresh).is_dir()  # may be a save under way
    assert cache.is_dir() and reg.version_dir("default", "v1").is_dir()
