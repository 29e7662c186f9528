"""Annotated dependencies read from ``app.state``; routers take these, never globals."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import HivemindRedis
from hivemind_gateway.settings import GatewaySettings


def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _redis(request: Request) -> HivemindRedis:
    return request.app.state.redis  # type: ignore[no-any-return]


def _api_keys(request: Request) -> ApiKeyStore:
    return request.app.state.api_keys  # type: ignore[no-any-return]


def _embedding(request: Request) -> httpx.AsyncClient:
    return request.app.state.embedding_http  # type: ignore[no-any-return]


def _inference(request: Request) -> httpx.AsyncClient:
    return request.app.state.inference_http  # type: ignore[no-any-return]


def _trainer(request: Request) -> httpx.AsyncClient:
    return request.app.state.trainer_http  # type: ignore[no-any-return]


async def _client_address(request: Request) -> str:
    """Where a call came from, for the audit trail."""
    return request.client.host if request.client else "unknown"


def _state(request: Request) -> Any:
    return request.app.state


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
RedisDep = Annotated[HivemindRedis, Depends(_redis)]
ApiKeysDep = Annotated[ApiKeyStore, Depends(_api_keys)]
EmbeddingHttpDep = Annotated[httpx.AsyncClient, Depends(_embedding)]
InferenceHttpDep = Annotated[httpx.AsyncClient, Depends(_inference)]
TrainerHttpDep = Annotated[httpx.AsyncClient, Depends(_trainer)]
StateDep = Annotated[Any, Depends(_state)]
ClientAddressDep = Annotated[str, Depends(_client_address)]
