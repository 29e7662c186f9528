"""What inference serves: the model list (cached briefly), model resolution and ``auto`` routing.

The served *version* used for cache keys is never taken from this cache: it is read from Redis
(``keys.served_model_version``), which the inference service updates around every swap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from hivemind_common import keys
from hivemind_common.errors import NotFound
from hivemind_gateway.openai.upstream import get_json

LIST_TTL_S = 5.0


@dataclass(frozen=True)
class AutoRules:
    """How ``model: "auto"`` picks: long prompts and listed tasks go to the large model."""

    small: str
    large: str
    large_above_chars: int
    large_tasks: frozenset[str]

    def pick(self, *, prompt_chars: int, task: str | None) -> str:
        if prompt_chars > self.large_above_chars or (task and task in self.large_tasks):
            return self.large
        return self.small


class ServedModels:
    """The inference model list with a short TTL, refreshed on a miss."""

    def __init__(self, client: httpx.AsyncClient, rules: AutoRules) -> None:
        self.client = client
        self.rules = rules
        self._cards: list[dict[str, Any]] = []
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def cards(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The model cards of ``GET /v1/models`` on inference."""
        if fresh or time.monotonic() - self._fetched > LIST_TTL_S:
            async with self._lock:
                if fresh or time.monotonic() - self._fetched > LIST_TTL_S:
                    data = await get_json(self.client, "inference", "/v1/models")
                    self._cards = list(data.get("data", []))
                    self._fetched = time.monotonic()
        return self._cards

    def _find(self, cards: list[dict[str, Any]], model: str) -> dict[str, Any] | None:
        for card in cards:
            if model == card.get("id") or model in card.get("aliases", []):
                return card
        if model == "default" and cards:
            return cards[0]
        return None

    async def resolve(
        self, model: str, *, prompt_chars: int = 0, task: str | None = None
    ) -> dict[str, Any]:
        """The card for a model id, alias, ``default`` or ``auto``; 404 model_not_found."""
        wanted = self.rules.pick(prompt_chars=prompt_chars, task=task) if model == "auto" else model
        card = self._find(await self.cards(), wanted)
        if card is None:
            card = self._find(await self.cards(fresh=True), wanted)
        if card is None:
            names = sorted({c["id"] for c in self._cards} | {"auto", "default"})
            raise NotFound(
                f"the model {model!r} does not exist; available: {', '.join(names)}",
                code="model_not_found",
                param="model",
            )
        return card


async def served_version(redis: Any, client: httpx.AsyncClient, name: str) -> str | None:
    """The version inference answers with right now, or None (mid-swap or unknown).

    Redis holds it (inference sets it after a swap and deletes it while switching). When the key
    is absent, inference itself is asked; a model in the middle of a swap gives None.
    """
    value = await redis.get(keys.served_model_version(name))
    if value:
        return str(value)
    try:
        card = await get_json(client, "inference", f"/v1/models/{name}")
    except Exception:
        return None
    if card.get("swapping") or not card.get("version"):
        return None
    return str(card["version"])


def served_models(settings: Any, client: httpx.AsyncClient) -> ServedModels:
    """Build the lifespan's ``ServedModels`` from gateway settings."""
    rules = AutoRules(
        small=settings.auto_small_model,
        large=settings.auto_large_model,
        large_above_chars=settings.auto_large_above_chars,
        large_tasks=frozenset(settings.auto_large_tasks),
    )
    return ServedModels(client, rules)
