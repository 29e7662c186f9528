"""MCP bridge settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from pydantic import SecretStr

from hivemind_common.settings import ServiceSettings


class McpSettings(ServiceSettings):
    service_name: str = "mcp"
    gateway_url: str | None = None  # overrides the hosts registry
    api_key: SecretStr | None = None  # stdio transport: the key used against the gateway
    gateway_timeout_s: float = 120.0
