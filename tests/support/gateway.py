"""A real gateway on a free port against a real Redis, with API keys made for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import connect_redis
from support.servers import serve_app


def create_api_key(redis_url: str, *, tenant: str, role: str, rpm: int | None = None) -> str:
    """Make a key straight in Redis (as `hivemind keys create` does); returns the plaintext."""

    async def make() -> str:
        redis = connect_redis(redis_url)
        try:
            store = ApiKeyStore(redis)
            _, plaintext = await store.create(tenant=tenant, role=role, rpm=rpm)  # type: ignore[arg-type]
            return plaintext
        finally:
            await redis.aclose()

    return asyncio.run(make())


def revoke_api_key(redis_url: str, key: str) -> None:
    """Revoke as `hivemind keys revoke` does: another process, no key cache of its own."""

    async def revoke() -> None:
        redis = connect_redis(redis_url)
        try:
            await ApiKeyStore(redis).revoke(key.split("_")[1])
        finally:
            await redis.aclose()

    asyncio.run(revoke())


@dataclass
class RunningGateway:
    url: str
    redis_url: str
    app: Any
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def key(self, tenant: str = "acme", role: str = "write") -> str:
        if (tenant, role) not in self.keys:
            self.keys[(tenant, role)] = create_api_key(self.redis_url, tenant=tenant, role=role)
        return self.keys[(tenant, role)]

    def client(self, tenant: str = "acme", role: str = "write", **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key(tenant, role)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)


@contextmanager
def running_gateway(
    redis_url: str, internal_token: str, data_dir: Path, **overrides: Any
) -> Iterator[RunningGateway]:
    """Serve a gateway built from settings (overrides are GatewaySettings fields)."""
    from hivemind_gateway.app import create_app
    from hivemind_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        redis_url=redis_url, internal_token=internal_token, data_dir=data_dir, **overrides
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield RunningGateway(url=url, redis_url=redis_url, app=app)
