"""The inference service's state: one typed object, made once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from hivemind_inference.follow_registry import RegistryFollower
from hivemind_inference.registry import LoadedModels
from hivemind_inference.settings import InferenceSettings


@dataclass(eq=False)
class InferenceState:
    """What one inference process holds (``app.state.inference``)."""

    settings: InferenceSettings
    models: LoadedModels
    follower: RegistryFollower | None = None


async def loaded_models(request: Request) -> LoadedModels:
    state: InferenceState = request.app.state.inference
    return state.models


ModelsDep = Annotated[LoadedModels, Depends(loaded_models)]
