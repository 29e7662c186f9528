"""Python client of the Hive-Mind native API: facts, memories, sessions, the reference library
(docs), search, tokenize and chunk; sync (:class:`Client`) and async (:class:`AsyncClient`)."""

from hivemind_client.client import AsyncClient, Client
from hivemind_client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    HivemindError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServerError,
    TooLarge,
    TransportError,
    Unauthorized,
    Unavailable,
)
from hivemind_client.models import DocInput

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "DocInput",
    "Forbidden",
    "HivemindError",
    "NotFound",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "TooLarge",
    "TransportError",
    "Unauthorized",
    "Unavailable",
]
