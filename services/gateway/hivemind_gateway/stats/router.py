"""``GET /v1/stats``: every registered section for the caller's tenant."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter

from hivemind_common.auth import ReadPrincipal
from hivemind_gateway.deps import StateDep
from hivemind_gateway.stats import suite  # noqa: F401  (registers the suite-wide sections)
from hivemind_gateway.stats.sections import SECTIONS

log = logging.getLogger(__name__)

router = APIRouter(tags=["stats"])


@router.get("/v1/stats")
async def stats(principal: ReadPrincipal, state: StateDep) -> dict[str, Any]:
    """Numbers of every surface, each section on its own."""
    names = list(SECTIONS)

    async def one(name: str) -> Any:
        try:
            return await asyncio.wait_for(SECTIONS[name](state, principal), 5.0)
        except Exception as exc:  # one failing section must not hide the others
            log.warning("stats section %s failed", name, exc_info=True)
            return {"error": type(exc).__name__}

    values = await asyncio.gather(*(one(n) for n in names))
    return {"tenant": principal.tenant, **dict(zip(names, values, strict=True))}
