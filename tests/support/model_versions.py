"""Registry versions a test can promote: the shipped GGUF copied in, as the exporter leaves one."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_common.models_paths import default_llm_gguf
from hivemind_common.redis import connect_redis


def register_version(
    redis_url: str, data_dir: Path, version: str, created_at: float, metrics: dict[str, Any]
) -> None:
    """A servable registry version of ``default`` (the shipped GGUF copied in)."""

    async def go() -> None:
        redis = connect_redis(redis_url)
        try:
            reg = ModelRegistry(redis, data_dir)
            directory = reg.version_dir("default", version)
            directory.mkdir(parents=True)
            gguf = directory / "model-Q8_0.gguf"
            shutil.copyfile(default_llm_gguf(), gguf)
            reg.write_manifest("default", version, {"serve": {"gguf": str(gguf), "lora": None}})
            await reg.register(
                ModelVersion(
                    name="default", version=version, created_at=created_at, metrics=metrics
                )
            )
            await reg.record_files("default", version)
        finally:
            await redis.aclose()

    asyncio.run(go())
