"""Code shared by two or more Hive-Mind services."""

from hivemind_common.auth import (
    AdminPrincipal,
    ApiKeyStore,
    OperatorPrincipal,
    Principal,
    ReadPrincipal,
    WritePrincipal,
    require_internal,
    require_role,
)
from hivemind_common.errors import (
    Conflict,
    Forbidden,
    HivemindError,
    Invalid,
    NotFound,
    QuotaExceeded,
    Timeout,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UpstreamError,
)
from hivemind_common.hosts import Registry, load_registry, service_url
from hivemind_common.redis import HivemindRedis, connect_redis
from hivemind_common.service_app import base_app, mark_started
from hivemind_common.settings import CommonSettings, ServiceSettings

__version__ = "0.1.0"

__all__ = [
    "AdminPrincipal",
    "ApiKeyStore",
    "CommonSettings",
    "Conflict",
    "Forbidden",
    "HivemindError",
    "HivemindRedis",
    "Invalid",
    "NotFound",
    "OperatorPrincipal",
    "Principal",
    "QuotaExceeded",
    "ReadPrincipal",
    "Registry",
    "ServiceSettings",
    "Timeout",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UpstreamError",
    "WritePrincipal",
    "base_app",
    "connect_redis",
    "load_registry",
    "mark_started",
    "require_internal",
    "require_role",
    "service_url",
]
