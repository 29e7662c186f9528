"""Settings base classes: environment variables prefixed ``HIVEMIND_``.

Secrets have no defaults. The internal token may come from ``HIVEMIND_INTERNAL_TOKEN`` or, when
that is unset, from ``$HIVEMIND_DATA_DIR/secrets/internal.token`` (written by ``hivemind up``).
Likewise the Redis password: from the URL itself, else ``HIVEMIND_REDIS_PASSWORD``, else, when
the URL names the embedded Redis of ``hivemind up`` (this machine, its port),
``$HIVEMIND_DATA_DIR/secrets/redis.password``; it is put into ``redis_url``, which is therefore
never shown unmasked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hivemind_common.redaction import MASK, mask_url, url_password

REDIS_PASSWORD_FILE = "redis.password"
REDIS_CONF_FILE = "redis.conf"  # the embedded server's config: its port and requirepass


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
    redis_password: SecretStr | None = None

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @model_validator(mode="after")
    def _load_redis_password(self) -> CommonSettings:
        if url_password(self.redis_url) is not None:
            return self
        if self.redis_password is None:
            embedded = embedded_redis_password(self.secrets_dir, self.redis_url)
            if embedded is not None:
                self.redis_password = SecretStr(embedded)
        if self.redis_password is not None:
            self.redis_url = with_redis_password(
                self.redis_url, self.redis_password.get_secret_value()
            )
        return self

    def __repr_args__(self) -> Any:
        # repr() and str() of settings end up in logs: URLs are shown masked there too
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if isinstance(value, str) and "://" in value else value

    def public(self) -> dict[str, Any]:
        """Settings safe to show: secrets masked, passwords in URLs masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump(mode="json").items():
            if isinstance(getattr(self, name), SecretStr):
                out[name] = MASK if value else None
            elif isinstance(value, str) and "://" in value:
                out[name] = mask_url(value)
            else:
                out[name] = value
        return out


def embedded_redis_password(secrets_dir: Path, url: str) -> str | None:
    """The embedded Redis' password, for a URL that names that Redis (this machine, its port).

    ``hivemind up`` writes ``redis.password`` and ``redis.conf`` (with the server's ``port``);
    a URL of another server (a test's, a deployment's) never gets the embedded password.
    """
    password_file, conf = secrets_dir / REDIS_PASSWORD_FILE, secrets_dir / REDIS_CONF_FILE
    if not password_file.is_file() or not conf.is_file():
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        return None
    if parts.scheme != "redis" or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    for line in conf.read_text().splitlines():
        name, _, value = line.strip().partition(" ")
        if name == "port" and value.strip() == str(port):
            return password_file.read_text().strip() or None
    return None


def with_redis_password(url: str, password: str) -> str:
    """``url`` carrying ``password`` (no user: Redis' default user), for a URL that has none."""
    scheme, sep, rest = url.partition("://")
    if not sep or url_password(url) is not None:
        return url
    return f"{scheme}://:{quote(password, safe='')}@{rest}"


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
