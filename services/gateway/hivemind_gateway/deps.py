"""Annotated dependencies read from the gateway's typed state; routers take these, never globals.

Each is an ``async def`` that reads an attribute: FastAPI runs a plain ``def`` dependency in its
thread pool, which on the hot path cost more than the route's own work (issue 17's profile).
"""

from __future__ import annotations

from typing import Annotated, cast

import httpx
from fastapi import Depends, Request

from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import HivemindRedis
from hivemind_gateway.settings import GatewaySettings
from hivemind_gateway.state import GatewayState


def gateway_state(request: Request) -> GatewayState:
    """The state the lifespan made (``app.state.gateway``)."""
    return cast(GatewayState, request.app.state.gateway)


async def _state(request: Request) -> GatewayState:
    return gateway_state(request)


async def _settings(request: Request) -> GatewaySettings:
    return gateway_state(request).settings


async def _redis(request: Request) -> HivemindRedis:
    return gateway_state(request).redis


async def _api_keys(request: Request) -> ApiKeyStore:
    return gateway_state(request).api_keys


async def _inference(request: Request) -> httpx.AsyncClient:
    return gateway_state(request).inference_http


async def _client_address(request: Request) -> str:
    """Where a call came from, for the audit trail."""
    return request.client.host if request.client else "unknown"


StateDep = Annotated[GatewayState, Depends(_state)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
RedisDep = Annotated[HivemindRedis, Depends(_redis)]
ApiKeysDep = Annotated[ApiKeyStore, Depends(_api_keys)]
InferenceHttpDep = Annotated[httpx.AsyncClient, Depends(_inference)]
ClientAddressDep = Annotated[str, Depends(_client_address)]
