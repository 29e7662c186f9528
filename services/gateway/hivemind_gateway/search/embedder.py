"""The gateway's client of the embedding service: short timeouts, a model id, an outage latch.

Queries must not wait on a dead service: after a failure the client answers "unavailable" at
once for ``retry_after_s`` (then tries again), so retrieval falls back to lexical scoring
without paying a connect timeout on every request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import httpx
import numpy as np
import orjson
from prometheus_client import Counter

from hivemind_common.errors import Unavailable

log = logging.getLogger(__name__)

ModelChanged = Callable[[str], Awaitable[None]]

QUERY_VECTORS = Counter(
    "hivemind_query_vector_cache_total",
    "Search queries' vectors: hit (a recent query's, no embedding call) or miss (embedded).",
    ["result"],
)
_HIT, _MISS = (QUERY_VECTORS.labels(r) for r in ("hit", "miss"))

QUERY_CACHE_PER_TENANT = 256  # vectors per tenant and process (MiniLM: 1.5 KiB each)
QUERY_CACHE_TENANTS = 32  # tenants per process; the least recent one is dropped whole


class Refused(Unavailable):
    """The embedding service answered but refused the texts (a 4xx: over one of its limits,
    say): sending the same texts again gets the same answer."""


class QueryVectors:
    """Recent query vectors, per tenant and model, least recently used dropped first.

    A coding agent's loop sends the same last user message with every tool result, and each of
    those chats searches for it again; so do the console's and a client's repeated searches. A
    hit skips the embedding service (its ~1-3 ms of CPU and a round trip). Each tenant has its
    own bounded list, so one tenant's queries neither push out nor time another's; entries carry
    the model, so a vector of a model that no longer serves is never handed out. Keys are a
    digest of the text, not the text (at most ~8 MiB per process in all).
    """

    def __init__(
        self, per_tenant: int = QUERY_CACHE_PER_TENANT, tenants: int = QUERY_CACHE_TENANTS
    ) -> None:
        self.per_tenant = per_tenant
        self.max_tenants = tenants
        self._tenants: OrderedDict[str, OrderedDict[tuple[str, bytes], np.ndarray]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(model: str, text: str) -> tuple[str, bytes]:
        return model, hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=16
        ).digest()

    def get(self, tenant: str, model: str | None, text: str) -> np.ndarray | None:
        """The vector of ``text`` for ``tenant`` in ``model``'s space, or None (a miss)."""
        if self.per_tenant <= 0:
            return None
        row = None
        if model is not None:  # None: no model answered yet, so nothing can be handed out
            rows = self._tenants.get(tenant)
            key = self._key(model, text)
            if rows is not None and (row := rows.get(key)) is not None:
                rows.move_to_end(key)
                self._tenants.move_to_end(tenant)
        if row is None:
            self.misses += 1
            _MISS.inc()
            return None
        self.hits += 1
        _HIT.inc()
        return row

    def put(self, tenant: str, model: str, text: str, row: np.ndarray) -> None:
        if self.per_tenant <= 0 or self.max_tenants <= 0:
            return
        row.setflags(write=False)  # shared by every caller that hits it
        rows = self._tenants.get(tenant)
        if rows is None:
            rows = self._tenants[tenant] = OrderedDict()
            while len(self._tenants) > self.max_tenants:
                self._tenants.popitem(last=False)
        self._tenants.move_to_end(tenant)
        key = self._key(model, text)
        rows[key] = row
        rows.move_to_end(key)
        while len(rows) > self.per_tenant:
            rows.popitem(last=False)

    def size(self, tenant: str) -> int:
        return len(self._tenants.get(tenant, ()))

    def clear(self) -> None:
        self._tenants.clear()


class EmbeddingClient:
    """Calls ``POST /embed``; remembers which model answered."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout_s: float = 3.0,
        retry_after_s: float = 2.0,
        on_model: ModelChanged | None = None,
        query_cache_per_tenant: int = QUERY_CACHE_PER_TENANT,
    ) -> None:
        self._http = http
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.model_id: str | None = None
        self.dimensions: int | None = None
        self._down_until = 0.0
        self._on_model = on_model
        self.failures = 0
        self.queries = QueryVectors(query_cache_per_tenant)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self) -> None:
        self._down_until = time.monotonic() + self.retry_after_s

    async def embed(
        self, texts: list[str], *, timeout_s: float | None = None
    ) -> tuple[np.ndarray, str]:
        """(rows, model id) for ``texts``; Unavailable when the service cannot answer.

        ``timeout_s`` overrides the client's (short, query-sized) timeout for a large batch.
        """
        if not self.available:
            raise Unavailable("embedding service unavailable (recent failure)")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            resp = await self._http.post("/embed", json={"texts": texts}, timeout=timeout)
        except httpx.HTTPError as exc:
            self.failures += 1
            self.mark_down()
            raise Unavailable(f"embedding service unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 500:
            self.failures += 1
            self.mark_down()
            raise Unavailable(f"embedding service answered {resp.status_code}")
        if resp.status_code in (400, 413, 422):  # these texts: the same texts, the same answer
            raise Refused(f"embedding service refused the texts ({resp.status_code})")
        if resp.status_code != 200:  # a wrong token or URL, a limit: the service, not the texts
            self.failures += 1
            self.mark_down()
            raise Unavailable(f"embedding service answered {resp.status_code}")
        try:
            body = orjson.loads(resp.content)
            rows = np.asarray(body["embeddings"], dtype=np.float32)
            model = str(body["model"])
        except (ValueError, KeyError, TypeError) as exc:
            self.mark_down()
            raise Unavailable("embedding service sent a malformed answer") from exc
        if rows.ndim != 2 or rows.shape[0] != len(texts):
            raise Unavailable("embedding service sent the wrong number of rows")
        if model != self.model_id:
            previous, self.model_id = self.model_id, model
            self.dimensions = int(rows.shape[1])
            self.queries.clear()
            log.info("embedding model is now %s (was %s)", model, previous)
            if self._on_model is not None:
                await self._on_model(model)
        return rows, model

    async def embed_one(self, text: str) -> tuple[np.ndarray, str]:
        rows, model = await self.embed([text])
        return rows[0], model

    async def embed_query(self, tenant: str, text: str) -> np.ndarray:
        """A search query's vector: from the recent queries of ``tenant`` when there."""
        row = self.queries.get(tenant, self.model_id, text)
        if row is not None:
            return row
        row, model = await self.embed_one(text)
        self.queries.put(tenant, model, text, row)
        return row

    async def probe(self) -> str | None:
        """Learn the model id (start-up); None when the service is not there."""
        try:
            _, model = await self.embed(["hive-mind start-up probe"])
        except Unavailable:
            return None
        return model
