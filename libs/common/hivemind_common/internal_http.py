"""HTTP clients for service-to-service calls: base URL from the registry, the internal token,
timeouts on every call."""

from __future__ import annotations

import httpx

from hivemind_common.hosts import service_url

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=3.0)


def internal_client(
    service: str,
    *,
    token: str | None,
    base_url: str | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    profile: str | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient for one internal service; the caller closes it (lifespan)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url or service_url(service, profile=profile),
        headers=headers,
        timeout=timeout,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
    )
