"""A pipeline that is built when it runs, so it survives a failover like single commands do.

``r.pipeline()`` records the queued calls; ``execute()`` opens a redis-py pipeline on the client
of that moment (on Sentinel, the primary found now) and replays them. The whole batch is retried
under the connector's policy: always when the error proves nothing ran, otherwise only when every
queued command is idempotent (a batch of reads always is).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from hivemind_common.redis import policy

if TYPE_CHECKING:
    from hivemind_common.redis.client import HivemindRedis


class RetryingPipeline:
    """Queue redis-py command calls (``pipe.hgetall(k)``), then ``await pipe.execute()``."""

    def __init__(self, owner: HivemindRedis, *, transaction: bool) -> None:
        self._owner = owner
        self._transaction = transaction
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> RetryingPipeline:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.reset()

    def __await__(self) -> Generator[Any, None, RetryingPipeline]:
        if False:  # pragma: no cover - makes this a generator; awaiting gives the pipeline back
            yield None
        return self

    def __len__(self) -> int:
        return len(self._queued)

    def reset(self) -> None:
        """Forget the queued commands."""
        self._queued.clear()

    def __getattr__(self, name: str) -> Callable[..., RetryingPipeline]:
        if name.startswith("_"):
            raise AttributeError(name)

        def queue(*args: Any, **kwargs: Any) -> RetryingPipeline:
            self._queued.append((name, args, kwargs))
            return self

        queue.__name__ = name
        return queue

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run every queued command in one round trip; the replies in order."""
        queued = list(self._queued)
        self.reset()
        if not queued:
            return []
        idempotent = all(
            policy.is_idempotent(
                policy.command_name(n, a),
                a[1:] if n == "execute_command" else a,
                kw,
                raw=n == "execute_command",
            )
            for n, a, kw in queued
        )
        backend = self._owner.backend

        async def attempt() -> list[Any]:
            client = await backend.client()
            try:
                async with client.pipeline(transaction=self._transaction) as pipe:
                    for name, args, kwargs in queued:
                        getattr(pipe, name)(*args, **kwargs)
                    return list(await pipe.execute(raise_on_error=raise_on_error))
            except Exception as exc:
                if policy.is_retryable(exc):
                    await backend.on_error(exc, client)
                raise

        what = "MULTI/EXEC pipeline" if self._transaction else "pipeline"
        return await self._owner.with_retry(attempt, idempotent=idempotent, what=what)
