"""`hivemind models ...` and `hivemind export` from the shell, against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from exporter.exporter_tiny import TinyModel, write_version

from hivemind_common.model_registry import ModelRegistry, ModelVersion

HIVEMIND = str(Path(sys.executable).with_name("hivemind"))


def _run(
    *args: str, redis_url: str, data_dir: Path, inference: str = "http://127.0.0.1:9"
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        HIVEMIND_REDIS_URL=redis_url,
        HIVEMIND_DATA_DIR=str(data_dir),
        HIVEMIND_INTERNAL_TOKEN="test-internal-token-not-secret",
        HIVEMIND_INFERENCE_URL=inference,
    )
    return subprocess.run(
        [HIVEMIND, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


async def test_models_list_shows_versions_and_rollback_without_previous_fails_clearly(
    redis_client, redis_url: str, data_dir: Path
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    await reg.register(ModelVersion(name="default", version="v1", metrics={"heldout_loss": 1.25}))
    listed = _run("models", "list", "--json", redis_url=redis_url, data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)["data"]
    assert [(d["version"], d["status"], d["metrics"]) for d in data] == [
        ("v1", "ready", {"heldout_loss": 1.25})
    ]
    table = _run("models", "list", redis_url=redis_url, data_dir=data_dir)
    assert "v1" in table.stdout and "heldout_loss=1.25" in table.stdout
    back = _run("models", "rollback", redis_url=redis_url, data_dir=data_dir)
    assert back.returncode == 1 and "no previous version" in back.stderr


@pytest.mark.slow
@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_export_command_writes_and_validates_the_gguf_files(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    write_version(reg, tiny, "v1")
    await reg.register(ModelVersion(name="default", version="v1"))
    done = _run(
        "export", "v1", "--quant", "Q8_0", "--no-chat-check", redis_url=redis_url, data_dir=data_dir
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["quant"] == "Q8_0" and summary["validation"]["passed"] is True
    assert summary["timings_s"]["adapter"] >= 0
    assert set((await reg.get("default", "v1")).files) >= {"adapter.gguf", "model-Q8_0.gguf"}
    missing = _run("export", "v9", redis_url=redis_url, data_dir=data_dir)
    assert missing.returncode == 1 and "not found" in missing.stderr


@pytest.mark.slow
async def test_models_promote_hot_swaps_a_version_into_inference(
    redis_client, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    import shutil

    import httpx
    from inference.serving import running_inference

    from hivemind_common.models_paths import default_llm_gguf

    reg = ModelRegistry(redis_client, data_dir)
    directory = reg.version_dir("default", "v1")
    directory.mkdir(parents=True)
    shutil.copyfile(default_llm_gguf(), directory / "model-Q8_0.gguf")
    serve = {"gguf": str(directory / "model-Q8_0.gguf"), "lora": None}
    reg.write_manifest("default", "v1", {"serve": serve})
    await reg.register(ModelVersion(name="default", version="v1"))
    await reg.record_files("default", "v1")
    with running_inference(internal_token, redis_url) as url:
        done = _run(
            "models", "promote", "v1", redis_url=redis_url, data_dir=data_dir, inference=url
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["version"] == "v1"
        headers = {"Authorization": f"Bearer {internal_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            models = (await client.get("/v1/models")).json()
        assert models["data"][0]["version"] == "v1"
    assert await reg.pointers("default") == {"serving": "v1"}


async def test_a_pinned_version_survives_cleanup_until_unpinned(
    redis_client, redis_url: str, data_dir: Path
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    for version in ("v1", "v2"):
        reg.version_dir("default", version).mkdir(parents=True)
        await reg.register(ModelVersion(name="default", version=version))
    pinned = _run("models", "pin", "v1", redis_url=redis_url, data_dir=data_dir)
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout) == {"version": "v1", "pinned": True}
    cleaned = _run(
        "models", "cleanup", "--keep-recent", "0", redis_url=redis_url, data_dir=data_dir
    )
    assert json.loads(cleaned.stdout.strip().splitlines()[-1]) == {"removed": ["v2"]}
    assert reg.version_dir("default", "v1").is_dir()
    _run("models", "pin", "v1", "--unpin", redis_url=redis_url, data_dir=data_dir)
    again = _run("models", "cleanup", "--keep-recent", "0", redis_url=redis_url, data_dir=data_dir)
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"removed": ["v1"]}
    from hivemind_common import audit

    entries, _ = await audit.read(redis_client, action="models.")
    assert {"models.pin", "models.unpin"} <= {e.action for e in entries}
