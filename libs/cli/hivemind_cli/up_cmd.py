"""``hivemind up`` (the whole suite on this machine) and ``hivemind status``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx
import typer
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from hivemind_cli.supervisor import Child, Supervisor
from hivemind_common.auth import ApiKeyStore
from hivemind_common.errors import Unavailable
from hivemind_common.hosts import SERVICES, RegistryError, load_registry, service_url
from hivemind_common.redaction import mask_url, url_password
from hivemind_common.redis import connect_redis
from hivemind_common.settings import REDIS_CONF_FILE, REDIS_PASSWORD_FILE, CommonSettings

console = Console(stderr=True, soft_wrap=True)
READY_TIMEOUT_S = 300.0
PROFILE_HELP = "Profile of hosts.yaml (default: HIVEMIND_PROFILE or local)."
START_ORDER = ("embedding", "inference", "trainer", "exporter", "gateway", "mcp")


def _write_secret(path: Path, value: str) -> None:
    """Written whole (a temporary file, synced, then renamed): a crash never leaves a key file
    empty or cut short. The folder is made, or narrowed, to 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.chmod(path, 0o600)


def ensure_internal_token(secrets_dir: Path) -> str:
    """The internal token, created on first start (mode 0600)."""
    path = secrets_dir / "internal.token"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    _write_secret(path, token)
    return token


def ensure_redis_password(secrets_dir: Path) -> str:
    """The embedded Redis' password, created on first start (mode 0600)."""
    path = secrets_dir / REDIS_PASSWORD_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    password = secrets.token_urlsafe(32)
    _write_secret(path, password)
    return password


def _redis_config(secrets_dir: Path, password: str, port: int) -> Path:
    """A config file (0600) holding ``requirepass``: the password never shows in ``ps``.

    Its ``port`` tells the settings of every process which Redis the password belongs to.
    """
    path = secrets_dir / REDIS_CONF_FILE
    _write_secret(path, f"port {port}\nrequirepass {password}")
    return path


async def ensure_admin_key(redis_url: str, secrets_dir: Path) -> tuple[Path, bool]:
    """Create the suite owner's (operator) key on first start; (its file, whether made now)."""
    path = secrets_dir / "admin.key"
    redis = connect_redis(redis_url)
    try:
        store = ApiKeyStore(redis)
        if path.is_file():
            try:
                principal = await store.verify(path.read_text().strip())
            except Exception:  # the key is gone (fresh Redis data): make a new one
                principal = None
            if principal is not None and principal.is_operator:
                return path, False
            if principal is not None:  # an admin key from before the operator role: replace it
                await store.revoke(principal.key_id)
        _, plaintext = await store.create(
            tenant="default", role="operator", name="operator (hivemind up)"
        )
        try:
            _write_secret(path, plaintext)
        except OSError as exc:  # the file's fault, not Redis's: no retry (a new key each time)
            raise typer.BadParameter(f"cannot write {path}: {exc}") from exc
        return path, True
    finally:
        await redis.aclose()


def _embedded_redis_port(redis_url: str) -> int | None:
    """The port to run an embedded Redis on, if the URL points at this machine."""
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis",) or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    return parts.port or 6379


APPENDFSYNC_POLICIES = ("everysec", "always", "no")


def _appendfsync() -> str:
    """The embedded Redis' AOF fsync policy, ``HIVEMIND_REDIS_APPENDFSYNC`` (docs/durability.md):
    ``everysec`` (default: a power cut loses up to ~1 s of acknowledged writes), ``always``
    (nothing acknowledged is lost, ~10x fewer writes/s here), ``no`` (the kernel decides)."""
    policy = os.environ.get("HIVEMIND_REDIS_APPENDFSYNC", "everysec").strip().lower()
    if policy not in APPENDFSYNC_POLICIES:
        raise typer.BadParameter(
            f"HIVEMIND_REDIS_APPENDFSYNC={policy!r}: use one of {', '.join(APPENDFSYNC_POLICIES)}"
        )
    return policy


def _redis_child(port: int, data_dir: Path, logs: Path, config: Path) -> Child:
    binary = shutil.which("redis-server")
    if binary is None:
        raise typer.BadParameter("redis-server is not installed: run `make install` first")
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        str(config),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(redis_dir),
        "--appendonly", "yes",
        "--appendfsync", _appendfsync(),
        "--save", "3600 1 300 100",
        "--maxmemory-policy", "noeviction",
        "--protected-mode", "yes",
        "--daemonize", "no",
    ]  # fmt: skip
    return Child("redis", argv, dict(os.environ), logs / "redis.log")


def _service_child(name: str, env: dict[str, str], logs: Path) -> Child:
    return Child(name, [sys.executable, "-m", f"hivemind_{name}"], env, logs / f"{name}.log")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _StopRequested(Exception):
    pass


def up(
    profile: str = typer.Option(None, help=PROFILE_HELP),
    only: str = typer.Option(None, help="Comma-separated services to run (default: all six)."),
) -> None:
    """Start an embedded Redis and the services of the local profile; Ctrl-C stops everything."""
    settings = CommonSettings()
    prof = profile or settings.profile
    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    secrets_dir = data_dir / "secrets"
    try:
        registry = load_registry(settings.hosts_file)
        registry.profile(prof)
    except RegistryError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    named = [s.strip() for s in only.split(",") if s.strip()] if only else []
    unknown = [s for s in named if s not in START_ORDER]
    if unknown:  # a typo once started Redis alone and said "all services ready"
        raise typer.BadParameter(
            f"unknown service {', '.join(unknown)}; one of {', '.join(START_ORDER)}",
            param_hint="--only",
        )
    wanted = [s for s in START_ORDER if not named or s in named]
    for name in wanted:
        port = registry.placement(name, prof).port
        if _port_in_use(port):
            console.print(f"[red]error:[/] port {port} for {name} is already in use")
            raise typer.Exit(1)

    ensure_internal_token(secrets_dir)
    # the URL as given (no password from the secrets file): children read that file themselves
    given_url = os.environ.get("HIVEMIND_REDIS_URL") or str(
        CommonSettings.model_fields["redis_url"].default
    )
    port = _embedded_redis_port(given_url)
    redis_config: Path | None = None
    if port is not None and url_password(given_url) is None:
        redis_config = _redis_config(secrets_dir, ensure_redis_password(secrets_dir), port)
        settings = CommonSettings(data_dir=data_dir)  # now with the embedded Redis' password
    env = dict(os.environ)
    env.update(
        HIVEMIND_DATA_DIR=str(data_dir),
        HIVEMIND_REDIS_URL=given_url,
        HIVEMIND_PROFILE=prof,
    )
    if settings.hosts_file:
        env["HIVEMIND_HOSTS_FILE"] = str(Path(settings.hosts_file).resolve())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _StopRequested

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    redis_sup = Supervisor([])
    services = Supervisor([_service_child(n, env, logs) for n in wanted])
    try:
        if port is not None:
            if _port_in_use(port):
                console.print(
                    f"[red]error:[/] port {port} is in use: stop what listens there, or point "
                    "HIVEMIND_REDIS_URL at another port (an embedded Redis starts there)"
                )
                raise typer.Exit(1)
            if redis_config is None:  # the URL carries its own password: use it for the server
                redis_config = _redis_config(secrets_dir, url_password(given_url) or "", port)
            redis_sup = Supervisor([_redis_child(port, data_dir, logs, redis_config)])
            redis_sup.start_all()
            console.print(f"redis      embedded on 127.0.0.1:{port} (data: {data_dir / 'redis'})")
        key_path, made = _wait_for_redis_and_key(settings.redis_url, secrets_dir)
        services.start_all()
        urls = {n: registry.url(n, prof) for n in wanted}
        _wait_ready(services, urls)
        _print_ready(urls, key_path, made, logs)
        while True:
            for child, code in services.check() + redis_sup.check():
                console.print(
                    f"[yellow]{child.name} exited with {code}; restarting in "
                    f"{child.next_start_at - time.monotonic():.0f}s[/]\n{child.tail()}"
                )
            time.sleep(0.5)
    except _StopRequested:
        console.print("\nstopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.stop_all()
        redis_sup.stop_all()
        console.print("stopped")


def _wait_for_redis_and_key(redis_url: str, secrets_dir: Path) -> tuple[Path, bool]:
    """Wait (bounded) until Redis answers, then make sure the admin key exists."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return asyncio.run(ensure_admin_key(redis_url, secrets_dir))
        except (OSError, RedisError, Unavailable) as exc:
            if time.monotonic() > deadline:
                console.print(
                    f"[red]error:[/] Redis at {mask_url(redis_url)} does not answer: {exc}"
                )
                raise typer.Exit(1) from exc
            time.sleep(0.2)


def _wait_ready(services: Supervisor, urls: dict[str, str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = dict(urls)
    with console.status("waiting for services…") as status:
        while pending:
            for child, code in services.check():
                console.print(f"[yellow]{child.name} exited with {code} while starting:[/]")
                console.print(child.tail())
            for name, url in list(pending.items()):
                if _ready(url):
                    console.print(f"[green]ready[/]  {name:<10} {url}")
                    del pending[name]
            status.update(f"waiting for {', '.join(pending)}…")
            if time.monotonic() > deadline:
                late = ", ".join(pending)
                console.print(f"[red]not ready after {READY_TIMEOUT_S:.0f}s:[/] {late}")
                raise typer.Exit(1)
            time.sleep(0.25)


def _print_ready(urls: dict[str, str], key_path: Path, made: bool, logs: Path) -> None:
    table = Table("service", "url", title="Hive-Mind is up")
    for name, url in urls.items():
        table.add_row(name, url + ("/mcp" if name == "mcp" else ""))
    console.print(table)
    state = "created" if made else "kept"
    console.print(f"operator API key ({state}): {key_path}")
    if "gateway" in urls:
        console.print(f"web console: {urls['gateway']}/console (sign in with that key)")
    console.print(f"logs: {logs}/<service>.log · Ctrl-C stops everything")
    typer.echo("hivemind: all services ready")


def status(
    profile: str = typer.Option(None, help=PROFILE_HELP),
) -> None:
    """Health and readiness of every service in the registry; exit 1 if any is not ready."""
    settings = CommonSettings()
    prof = profile or settings.profile
    table = Table("service", "url", "health", "ready", "detail")
    all_ready = True
    for name in SERVICES:
        try:
            url = service_url(name, profile=prof, hosts_file=settings.hosts_file)
        except RegistryError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from exc
        health, ready, detail = "down", "no", ""
        try:
            h = httpx.get(f"{url}/healthz", timeout=2.0)
            health = "ok" if h.status_code == 200 else str(h.status_code)
            r = httpx.get(f"{url}/readyz", timeout=3.0)
            ready = "yes" if r.status_code == 200 else "no"
            if r.status_code != 200:
                detail = str(r.json().get("reason", ""))[:80]
        except (httpx.HTTPError, ValueError) as exc:
            detail = type(exc).__name__
        all_ready = all_ready and ready == "yes"
        table.add_row(name, url, health, ready, detail)
    Console().print(table)
    if not all_ready:
        raise typer.Exit(1)
