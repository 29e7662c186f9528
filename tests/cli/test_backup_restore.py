"""`hivemind backup` → wipe → `hivemind restore` brings back every fact, memory, key and the
serving version, on a standalone Redis, a Cluster and under Sentinel; a damaged backup restores
nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from typer.testing import CliRunner

from hivemind_cli.main import app
from hivemind_common import keys
from hivemind_common.auth import ApiKeyStore
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_common.redis import connect_redis
from support.redis_servers import standalone_redis

MODEL = "default"


def _cli(redis_url: str, data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir)}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


async def _populate(redis_url: str, data_dir: Path) -> dict[str, Any]:
    """Facts, memories (one expiring), a key, and three versions: v3 serving, v2 previous."""
    redis = connect_redis(redis_url)
    try:
        for tenant in ("acme", "globex"):
            for i in range(20):
                await redis.hset(keys.fact(tenant, f"f{i}"), mapping={"value": f"{tenant}-{i}"})
                await redis.hset(keys.memory(tenant, f"m{i}"), mapping={"text": f"note {i}"})
        await redis.expire(keys.memory("acme", "m0"), 3600)
        _, plaintext = await ApiKeyStore(redis).create(tenant="acme", role="admin")
        registry = ModelRegistry(redis, data_dir)
        for version in ("v1", "v2", "v3"):
            vdir = registry.version_dir(MODEL, version)
            vdir.mkdir(parents=True)
            (vdir / "adapter.gguf").write_bytes(version.encode() * 1000)
            await registry.register(ModelVersion(name=MODEL, version=version, path=str(vdir)))
            await registry.mark_serving(MODEL, version)
        (data_dir / "datasets").mkdir()
        (data_dir / "datasets" / "d1.jsonl").write_text('{"messages": []}\n')
        (data_dir / "secrets").mkdir()
        (data_dir / "secrets" / "admin.key").write_text("not-a-real-key")
        return {"key": plaintext, "state": await _state(redis)}
    finally:
        await redis.aclose()


async def _state(redis: Any) -> dict[str, Any]:
    """Every key's type and value (hashes and sets), which a restore must bring back."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "set":
            out[key] = sorted(await redis.smembers(key))
        else:
            out[key] = kind
    return out


async def _check(redis_url: str, data_dir: Path, before: dict[str, Any]) -> None:
    redis = connect_redis(redis_url)
    try:
        assert await _state(redis) == before["state"]
        principal = await ApiKeyStore(redis).verify(before["key"])
        assert (principal.tenant, principal.role) == ("acme", "admin")
        assert 0 < await redis.ttl(keys.memory("acme", "m0")) <= 3600
        registry = ModelRegistry(redis, data_dir)
        assert await registry.pointers(MODEL) == {"serving": "v3", "previous": "v2"}
        serving = registry.version_dir(MODEL, "v3") / "adapter.gguf"
        assert serving.read_bytes() == b"v3" * 1000
        assert (registry.version_dir(MODEL, "v2") / "adapter.gguf").is_file()
    finally:
        await redis.aclose()


def _wipe(redis_url: str) -> None:
    async def go() -> None:
        redis = connect_redis(redis_url)
        try:
            async for key in redis.scan_iter(count=500):
                await redis.delete(key)
        finally:
            await redis.aclose()

    asyncio.run(go())


@pytest.mark.parametrize("topology", ["standalone", "cluster", "sentinel"])
def test_a_restore_into_a_fresh_redis_and_data_dir_brings_back_every_fact_memory_key_and_the_serving_version(  # noqa: E501
    topology: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fixture = {"standalone": "redis_url", "cluster": "redis_cluster_url"}
    url = request.getfixturevalue(fixture.get(topology, "redis_sentinel_url"))
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    before = asyncio.run(_populate(url, data_dir))
    code, out = _cli(url, data_dir, "backup", "--to", str(tmp_path / "backups"))
    assert code == 0, out
    backup = Path(out.strip())
    assert backup.stat().st_mode & 0o777 == 0o700  # without secrets too: it holds all the data
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["redis"] == {"topology": topology, "keys": len(before["state"])}
    assert manifest["models"] == {MODEL: {"serving": "v3", "previous": "v2"}}
    assert "files/models/default/v3/adapter.gguf" in manifest["sha256"]
    assert not any(p.startswith("files/models/default/v1/") for p in manifest["sha256"])
    assert not any(p.startswith("files/secrets/") for p in manifest["sha256"])

    fresh_dir = tmp_path / "fresh"
    if topology == "standalone":
        with standalone_redis(tmp_path / "fresh-redis") as fresh:
            code, out = _cli(fresh.url, fresh_dir, "restore", str(backup))
            assert code == 0, out
            asyncio.run(_check(fresh.url, fresh_dir, before))
    else:
        _wipe(url)
        code, out = _cli(url, fresh_dir, "restore", str(backup))
        assert code == 0, out
        asyncio.run(_check(url, fresh_dir, before))
    assert not (fresh_dir / "secrets").exists()


def test_a_changed_file_stops_the_restore_before_anything_changes(
    redis_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    asyncio.run(_populate(redis_url, data_dir))
    code, out = _cli(redis_url, data_dir, "backup", "--to", str(tmp_path / "b"))
    backup = Path(out.strip())
    (backup / "files/models/default/v3/adapter.gguf").write_bytes(b"bitrot")
    _wipe(redis_url)
    code, out = _cli(redis_url, tmp_path / "fresh", "restore", str(backup))
    assert code == 1
    assert "files/models/default/v3/adapter.gguf" in out
    assert asyncio.run(_state_of(redis_url)) == {}
    assert not (tmp_path / "fresh").exists()


def test_a_corrupt_manifest_is_a_one_line_error(redis_url: str, tmp_path: Path) -> None:
    backup = tmp_path / "hivemind-backup-19990101T000000Z"
    backup.mkdir()
    for text in ("{not json", '{"format": 1}', "[1, 2]"):
        (backup / "manifest.json").write_text(text)
        code, out = _cli(redis_url, tmp_path / "fresh", "restore", str(backup))
        assert code == 1 and "Traceback" not in out, (text, out)
        assert "error:" in out, out


async def _state_of(url: str) -> dict[str, Any]:
    redis = connect_redis(url)
    try:
        return await _state(redis)
    finally:
        await redis.aclose()


def test_a_restore_refuses_a_redis_that_holds_keys_unless_forced(
    redis_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    before = asyncio.run(_populate(redis_url, data_dir))
    backup = Path(_cli(redis_url, data_dir, "backup", "--to", str(tmp_path / "b"))[1].strip())
    code, out = _cli(redis_url, data_dir, "restore", str(backup))
    assert code == 1 and "holds keys already" in out
    # this Redis marks a key migration done that the backup's data may predate
    raw = redis_sync.Redis.from_url(redis_url)
    raw.set(keys.migration_done("vecmodels-v1"), "1")
    code, out = _cli(redis_url, data_dir, "restore", str(backup), "--force")
    assert code == 0, out
    asyncio.run(_check(redis_url, data_dir, before))
    assert not list(raw.scan_iter(match=keys.MIGRATIONS_DONE_MATCH))  # they run again


def test_secrets_travel_only_when_asked_and_retention_keeps_the_newest(
    redis_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    asyncio.run(_populate(redis_url, data_dir))
    to = tmp_path / "b"
    for i in range(4):  # older backups, by their names
        old = to / f"hivemind-backup-19990101T00000{i}Z"
        old.mkdir(parents=True)
        (old / "manifest.json").write_text("{}")
    args = ("backup", "--to", str(to), "--with-secrets", "--keep", "3")
    code, out = _cli(redis_url, data_dir, *args)
    assert code == 0, out
    newest = Path(out.strip())
    assert (newest / "files/secrets/admin.key").read_text() == "not-a-real-key"
    assert newest.stat().st_mode & 0o777 == 0o700  # every tenant's data: the owner's eyes only
    kept = sorted(p.name for p in to.iterdir())
    assert len(kept) == 3 and kept[-1] == newest.name
    _wipe(redis_url)
    fresh = tmp_path / "fresh"
    assert _cli(redis_url, fresh, "restore", str(newest))[0] == 0
    assert (fresh / "secrets/admin.key").stat().st_mode & 0o777 == 0o600
