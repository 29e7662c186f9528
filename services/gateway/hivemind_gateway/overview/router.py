"""``GET /``: the suite's name, version and the status of every service."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Request

from hivemind_common.hosts import SERVICES, RegistryError, service_url
from hivemind_gateway import __version__

router = APIRouter(tags=["overview"])
PROBE_TIMEOUT_S = 1.5


async def _probe(
    client: httpx.AsyncClient, name: str, settings: object
) -> tuple[str, dict[str, str]]:
    try:
        url = getattr(settings, f"{name}_url", None) or service_url(
            name, profile=getattr(settings, "profile", None)
        )
    except RegistryError as exc:
        return name, {"status": "unknown", "detail": str(exc)}
    try:
        resp = await client.get(f"{url}/readyz", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return name, {"status": "down", "detail": type(exc).__name__}
    if resp.status_code == 200:
        return name, {"status": "ready"}
    try:
        body = resp.json()
    except ValueError:
        body = None
    # whatever answers on that port (another program, a proxy): any JSON, or none
    reason = str(body.get("reason", "")) if isinstance(body, dict) else f"HTTP {resp.status_code}"
    return name, {"status": "unavailable", "detail": reason[:200]}


@router.get("/")
async def overview(request: Request) -> dict[str, object]:
    """Name, version and the readiness of every service of the suite."""
    settings = request.app.state.settings
    others = [s for s in SERVICES if s != "gateway"]
    async with httpx.AsyncClient() as client:
        results = dict(await asyncio.gather(*(_probe(client, s, settings) for s in others)))
    results["gateway"] = {"status": "ready"}
    ok = all(r["status"] == "ready" for r in results.values())
    return {
        "name": "hive-mind",
        "version": __version__,
        "status": "ok" if ok else "degraded",
        "services": {s: results[s] for s in SERVICES},
    }
