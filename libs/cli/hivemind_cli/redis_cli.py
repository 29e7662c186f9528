"""Redis for the command line: give up after a few seconds and say what to do about it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import redis.exceptions as redis_errors
import typer

from hivemind_common.errors import HivemindError
from hivemind_common.redaction import mask_url
from hivemind_common.redis import HivemindRedis, RedisUnavailable, connect_redis
from hivemind_common.settings import CommonSettings

T = TypeVar("T")

# A service rides out a failover (30 s); a person at a prompt wants an answer sooner.
CLI_RETRY_DEADLINE_S = 5.0


def shown_url(url: str) -> str:
    """The URL without its password or secret options, for messages."""
    return mask_url(url)


def cli_redis(url: str | None = None) -> HivemindRedis:
    """A client for ``url`` (default: ``HIVEMIND_REDIS_URL``) with the command line's deadline."""
    return connect_redis(url or CommonSettings().redis_url, retry_deadline=CLI_RETRY_DEADLINE_S)


@contextmanager
def exit_on_failure(url: str) -> Iterator[None]:
    """Turn an unreachable Redis or any Hive-Mind error into one line on stderr and exit 1."""
    try:
        yield
    except RedisUnavailable as exc:
        typer.echo(
            f"error: cannot reach Redis at {shown_url(url)}: {exc.message}\n"
            "  is `hivemind up` running? HIVEMIND_REDIS_URL names another server.",
            err=True,
        )
        raise typer.Exit(1) from exc
    except HivemindError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except redis_errors.AuthenticationError as exc:  # NOAUTH / WRONGPASS: another data dir's
        typer.echo(
            f"error: Redis at {shown_url(url)} refused the password ({exc}); the password is read "
            "from $HIVEMIND_DATA_DIR/secrets/redis.password (run from the directory `hivemind up` "
            "ran in, or set HIVEMIND_DATA_DIR or HIVEMIND_REDIS_URL)",
            err=True,
        )
        raise typer.Exit(1) from exc
    except redis_errors.RedisError as exc:
        typer.echo(f"error: Redis at {shown_url(url)}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc


def run_with_redis(action: Callable[[HivemindRedis], Awaitable[T]], url: str | None = None) -> T:
    """Run ``action`` on a fresh client; a failure becomes one line on stderr and exit code 1."""
    url = url or CommonSettings().redis_url

    async def main() -> T:
        redis = cli_redis(url)
        try:
            return await action(redis)
        finally:
            await redis.aclose()

    with exit_on_failure(url):
        try:
            return asyncio.run(main())
        except OSError as exc:
            typer.echo(f"error: cannot reach Redis at {shown_url(url)}: {exc}", err=True)
            raise typer.Exit(1) from exc
