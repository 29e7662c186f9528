"""Admin routes: list the served models and hot-swap one to a new GGUF / LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from hivemind_common.auth import InternalCaller
from hivemind_common.errors import Conflict
from hivemind_inference.schemas import LoadRequest
from hivemind_inference.state import ModelsDep

router = APIRouter(prefix="/admin", dependencies=[InternalCaller])


@router.get("/models")
async def list_models(models: ModelsDep) -> dict[str, Any]:
    return {"data": [slot.describe() for slot in models.slots.values()]}


@router.post("/models/{name}/load")
async def load_model(name: str, body: LoadRequest, models: ModelsDep) -> dict[str, Any]:
    """Load beside the serving copy, smoke-test, switch; answers once the new copy serves.

    The old copy drains (and is then freed) in the background; ``draining`` says how many of
    its requests were still running when this answered.
    """
    slot = models.resolve(name)
    if body.version == slot.current.version:
        raise Conflict(
            f"version {body.version!r} is already serving as {slot.spec.name!r}; "
            "give every new build its own version (caches are keyed on it)",
            code="version_in_use",
            param="version",
        )
    result = await models.swap(
        slot.spec.name,
        gguf=Path(body.gguf),
        lora=Path(body.lora) if body.lora else None,
        version=body.version,
    )
    return {
        "name": result.name,
        "version": result.version,
        "previous_version": result.previous_version,
        "swap_ms": result.swap_ms,
        "load_ms": result.load_ms,
        "smoke_text": result.smoke_text,
        "draining": result.draining,
    }
