"""MCP bridge settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from hivemind_common.settings import ServiceSettings


class McpSettings(ServiceSettings):
    service_name: str = "mcp"
    gateway_url: str | None = None  # overrides the hosts registry
    api_key: SecretStr | None = None  # stdio transport: the key used against the gateway
    gateway_timeout_s: float = 120.0  # LLM tools may take a while
    gateway_connect_timeout_s: float = 5.0

    # streamable HTTP: the caller's bearer key is checked against the gateway before the MCP
    # request runs; an accepted key is remembered this long (a revoked key still fails on
    # every tool call, since the gateway checks it again).
    auth_check_path: str = "/v1/facts?limit=1"
    auth_cache_s: float = 30.0
    # Host headers accepted on /mcp (DNS-rebinding protection); empty: loopback names only
    # when bound to loopback, any host otherwise.
    allowed_hosts: list[str] = Field(default_factory=list)
    json_response: bool = False  # answer POSTs with plain JSON instead of an SSE stream
    stateless_http: bool = False  # no MCP session ids (any replica can answer any request)
    # MCP sessions (stateful HTTP): open at once in all, per key, and closed after this long idle
    mcp_max_sessions: int = Field(default=1000, ge=1, le=100_000)
    mcp_max_sessions_per_key: int = Field(default=32, ge=1, le=100_000)
    mcp_session_idle_s: float = Field(default=1800.0, gt=0, le=7 * 86400)
