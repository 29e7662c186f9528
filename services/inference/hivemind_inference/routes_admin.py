"""Admin routes: list the served models and hot-swap one to a new GGUF / LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from hivemind_common.auth import InternalCaller
from hivemind_common.errors import Conflict
from hivemind_inference.registry import ModelRegistry
from hivemind_inference.schemas import LoadRequest

router = APIRouter(prefix="/admin", dependencies=[InternalCaller])


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry  # type: ignore[no-any-return]


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    reg = _registry(request)
    return {"data": [slot.describe() for slot in reg.slots.values()]}


@router.post("/models/{name}/load")
async def load_model(name: str, body: LoadRequest, request: Request) -> dict[str, Any]:
    """Load beside the serving copy, smoke-test, switch; answers once the new copy serves.

    The old copy drains (and is then freed) in the background; ``draining`` says how many of
    its requests were still running when this answered.
    """
    reg = _registry(request)
    slot = reg.resolve(name)
    if body.version == slot.current.version:
        raise Conflict(
            f"version {body.version!r} is already serving as {slot.spec.name!r}; "
            "give every new build its own version (caches are keyed on it)",
            code="version_in_use",
            param="version",
        )
    result = await reg.swap(
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
