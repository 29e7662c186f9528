"""Publish the version each model answers with to Redis, so caches key on the served version.

While a swap switches copies the key is deleted first (a gateway then bypasses its response
cache), and set to the new version right after. Redis being down never stops inference.
"""

from __future__ import annotations

import asyncio
import logging

from hivemind_common import keys
from hivemind_common.redis import HivemindRedis

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 2.0


class ServedVersionPublisher:
    """The ``on_swap`` hook of the registry."""

    def __init__(self, redis: HivemindRedis | None) -> None:
        self.redis = redis

    async def __call__(self, name: str, version: str | None) -> None:
        if self.redis is None:
            return
        key = keys.served_model_version(name)
        try:
            if version is None:
                await asyncio.wait_for(self.redis.delete(key), PUBLISH_TIMEOUT_S)
            else:
                await asyncio.wait_for(self.redis.set(key, version), PUBLISH_TIMEOUT_S)
        except Exception as exc:  # Redis is optional for inference; log and serve on
            log.warning("could not publish served version of %s: %s", name, exc)
