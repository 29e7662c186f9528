"""Parse ``HIVEMIND_REDIS_URL`` into one typed description of the deployment.

Four forms (SPEC.md, "Configuration"):

- ``redis://[user:pass@]host:port[/db][?options]`` and ``rediss://…`` (TLS): one server;
- ``redis+cluster://[user:pass@]h1:p1,h2:p2,…[?options]`` (``rediss+cluster://`` for TLS);
- ``redis+sentinel://[user:pass@]h1:p1,h2:p2,…/<service>[/db][?options]``
  (``rediss+sentinel://`` for TLS to the data nodes).

Query options: ``db`` (standalone, sentinel), ``wait_replicas`` and ``wait_timeout_ms`` (durable
writes), ``durability`` (``available``, the default, or ``strong``: a durable write no replica
acknowledged is retried or refused, never returned as done), ``socket_timeout`` and
``connect_timeout`` (seconds), ``retry_deadline`` (seconds a failover may take before callers
see an error), ``sentinel_username`` / ``sentinel_password``,
and TLS pass-through: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
(``none|optional|required``), ``ssl_check_hostname`` (``true|false``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

from hivemind_common.errors import Invalid

Topology = Literal["standalone", "cluster", "sentinel"]
Durability = Literal["available", "strong"]

_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_KNOWN_OPTIONS = frozenset(
    {
        "db",
        "wait_replicas",
        "wait_timeout_ms",
        "durability",
        "socket_timeout",
        "connect_timeout",
        "retry_deadline",
        "sentinel_username",
        "sentinel_password",
        "ssl_check_hostname",
        *_TLS_OPTIONS,
    }
)


@dataclass(frozen=True)
class RedisTarget:
    """Everything ``connect_redis`` needs, parsed and validated."""

    topology: Topology
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    service: str | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int = 500
    durability: Durability = "available"
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    retry_deadline: float = 30.0
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: dict[str, Any] = field(default_factory=dict)

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by every redis-py client we build for this target."""
        kw: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
        }
        if self.tls:
            kw["ssl"] = True
            kw.update(self.tls_options)
        return kw


def _bad(url: str, why: str) -> Invalid:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return Invalid(f"invalid HIVEMIND_REDIS_URL ({scheme}://…): {why}", param="redis_url")


def _parse_hostport(url: str, item: str) -> tuple[str, int]:
    host, sep, port_s = item.rpartition(":")
    if not sep:
        host, port_s = item, "6379"
    host = host.strip("[]")
    if not host:
        raise _bad(url, f"missing host in {item!r}")
    if not (port_s.isascii() and port_s.isdigit()) or not 0 < int(port_s) < 65536:
        raise _bad(url, f"port must be a number from 1 to 65535 in {item!r}")
    return host, int(port_s)


def _int_option(url: str, name: str, raw: str, low: int, high: int) -> int:
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or not low <= int(raw) <= high:
        raise _bad(url, f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _float_option(url: str, name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise _bad(url, f"{name} must be a number from {low} to {high}, got {raw!r}")
    return value


def parse_redis_url(url: str) -> RedisTarget:
    """Parse and validate one ``HIVEMIND_REDIS_URL``; raises :class:`Invalid` with the reason."""
    if not isinstance(url, str) or "://" not in url:
        raise Invalid("HIVEMIND_REDIS_URL must look like redis://host:port/db", param="redis_url")
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in _SCHEMES:
        raise _bad(url, f"unsupported scheme; use one of {', '.join(s + '://' for s in _SCHEMES)}")
    topology, tls = _SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    rest = rest.split("#", 1)[0]
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    username = password = None
    if userinfo:
        user_s, colon, pass_s = userinfo.partition(":")
        username = unquote(user_s) or None
        password = unquote(pass_s) if colon else None
        if password is None:  # "redis://secret@host" is the classic password-only form
            username, password = None, unquote(user_s)
    hosts_s, _, path = hostpart.partition("/")
    if not hosts_s:
        raise _bad(url, "no host given")
    items = [h for h in hosts_s.split(",")]
    if any(not h for h in items):
        raise _bad(url, "empty host in the host list")
    nodes = tuple(_parse_hostport(url, h) for h in items)
    segments = [unquote(s) for s in path.split("/") if s]

    parsed = parse_qs(query, keep_blank_values=True)
    repeated = sorted(k for k, v in parsed.items() if len(v) > 1)
    if repeated:  # "durability=strong&durability=available": which one was meant?
        raise _bad(url, f"option given more than once: {', '.join(repeated)}")
    options = {k: v[-1] for k, v in parsed.items()}
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if unknown:
        raise _bad(url, f"unknown option(s) {', '.join(unknown)}")

    service = None
    db_s = options.get("db")
    if topology == "standalone":
        if len(nodes) != 1:
            raise _bad(
                url,
                "a standalone URL names exactly one host; use redis+cluster:// or redis+sentinel://",
            )
        if len(segments) > 1:
            raise _bad(url, "path must be /<db>")
        db_s = db_s if db_s is not None else (segments[0] if segments else None)
    elif topology == "cluster":
        if segments and segments != ["0"]:
            raise _bad(url, "Redis Cluster has only database 0; drop the path")
        if db_s not in (None, "0"):
            raise _bad(url, "Redis Cluster has only database 0")
    else:
        if not segments:
            raise _bad(url, "name the Sentinel service: redis+sentinel://h:p,…/<service>")
        if len(segments) > 2:
            raise _bad(url, "path must be /<service>[/<db>]")
        service = segments[0]
        if len(segments) == 2:
            db_s = db_s if db_s is not None else segments[1]
    db = _int_option(url, "db", db_s, 0, 15) if db_s is not None else 0

    wait_default = 0 if topology == "standalone" else 1
    tls_options: dict[str, Any] = {k: options[k] for k in _TLS_OPTIONS if k in options}
    if "ssl_cert_reqs" in tls_options and tls_options["ssl_cert_reqs"] not in (
        "none",
        "optional",
        "required",
    ):
        raise _bad(url, "ssl_cert_reqs must be none, optional or required")
    if "ssl_check_hostname" in options:
        flag = options["ssl_check_hostname"].lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise _bad(url, "ssl_check_hostname must be true or false")
        tls_options["ssl_check_hostname"] = flag in ("true", "1", "yes")
    if tls_options and not tls:
        raise _bad(url, "TLS options need a rediss:// URL")
    durability = options.get("durability", "available")
    if durability not in ("available", "strong"):
        raise _bad(url, "durability must be available or strong")
    return RedisTarget(
        topology=topology,
        nodes=nodes,
        tls=tls,
        username=username,
        password=password,
        db=db,
        service=service,
        wait_replicas=_int_option(
            url, "wait_replicas", options.get("wait_replicas", str(wait_default)), 0, 16
        ),
        wait_timeout_ms=_int_option(
            url, "wait_timeout_ms", options.get("wait_timeout_ms", "500"), 1, 60_000
        ),
        durability="strong" if durability == "strong" else "available",
        socket_timeout=_float_option(
            url, "socket_timeout", options.get("socket_timeout", "5"), 0.01, 600
        ),
        connect_timeout=_float_option(
            url, "connect_timeout", options.get("connect_timeout", "2"), 0.01, 600
        ),
        retry_deadline=_float_option(
            url, "retry_deadline", options.get("retry_deadline", "30"), 0, 600
        ),
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
        tls_options=tls_options,
    )
