"""Settings base classes: environment variables prefixed ``HIVEMIND_``.

Secrets have no defaults. The internal token may come from ``HIVEMIND_INTERNAL_TOKEN`` or, when
that is unset, from ``$HIVEMIND_DATA_DIR/secrets/internal.token`` (written by ``hivemind up``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What every process of Hive-Mind reads: where Redis, data and the hosts registry are."""

    model_config = SettingsConfigDict(
        env_prefix="HIVEMIND_", extra="ignore", env_file=None, populate_by_name=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./var")
    profile: str = "local"
    hosts_file: Path | None = None
    node: str | None = Field(
        default=None, description="The node of the hosts registry this process runs on."
    )
    log_level: str = "INFO"
    log_json: bool = False

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"


class ServiceSettings(CommonSettings):
    """Base of each service's settings class."""

    service_name: str = "service"
    host: str = "127.0.0.1"  # localhost by default; containers set 0.0.0.0
    port: int | None = None  # None: the port the hosts registry gives this service
    internal_token: SecretStr | None = None

    @model_validator(mode="after")
    def _load_internal_token(self) -> ServiceSettings:
        if self.internal_token is None:
            path = self.secrets_dir / "internal.token"
            if path.is_file():
                self.internal_token = SecretStr(path.read_text().strip())
        return self

    def require_internal_token(self) -> str:
        """The token, or a clear error telling where to set it."""
        if self.internal_token is None or not self.internal_token.get_secret_value():
            raise RuntimeError(
                "HIVEMIND_INTERNAL_TOKEN is not set and "
                f"{self.secrets_dir / 'internal.token'} does not exist"
            )
        return self.internal_token.get_secret_value()

    def resolved_port(self) -> int:
        """Port from settings, else from the hosts registry."""
        if self.port is not None:
            return self.port
        from hivemind_common.hosts import load_registry

        registry = load_registry(self.hosts_file)
        return registry.placement(self.service_name, self.profile).port

    def public(self) -> dict[str, Any]:
        """Settings safe to show: secrets masked."""
        return self.model_dump(mode="json", exclude={"internal_token"})
