"""The in-memory index of every tenant, loaded from Redis and kept current from change streams.

Redis is the source of truth. Each write appends ``{op, kind, id, v}`` to the tenant's change
stream; every gateway process tails those streams and re-reads the item named (so applying a
change twice, or out of order, still ends at Redis' current state). The process that made a
write also applies it at once, so a caller reads its own writes. Items stored while the
embedding service was down, or made by another model, are (re-)embedded by a backfill task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import numpy as np
from prometheus_client import Counter

from hivemind_common import keys
from hivemind_common.errors import Unavailable
from hivemind_common.gc_pauses import freeze_loaded
from hivemind_gateway.search.embedder import EmbeddingClient, Refused
from hivemind_gateway.search.index import KINDS, Item, TenantIndex
from hivemind_gateway.storage_schema import (
    VERSION_FIELD,
    change_command,
    item_from_record,
    vector_bytes,
    vector_from_bytes,
)

log = logging.getLogger(__name__)
VECTORS_REFUSED = Counter(
    "hivemind_search_vectors_refused_total",
    "Items the embedding service refused to embed (they are found by their words only)",
)

LOAD_CHUNK = 500
TAIL_BLOCK_MS = 400
DISCOVER_EVERY_S = 5.0
BACKFILL_EVERY_S = 1.0  # when idle; a write without a vector wakes the worker at once
CLOSE_TIMEOUT_S = 5.0
BACKFILL_BATCH = 64
# batches each process has at the embedding service at once: while one is encoded, the next is
# sent and tokenized there, so the service's workers never wait for the gap between two
# (one at a time kept them 1.65 of 2 cores busy during an ingest)
BACKFILL_IN_FLIGHT = 2
# looked at per pass, so that batches claimed by this process' other loop and by other
# processes are passed over
CANDIDATES = 8 * BACKFILL_BATCH
# how long a claim keeps other workers off an item: longer than a batch may take (its timeout,
# below), so no batch is embedded twice; a claim left by a process killed mid-batch delays
# those items this long (it was 60 s). Should one outlive its claims, the vector is still
# written only for the version embedded.
CLAIM_TTL_MS = 35_000
BACKFILL_TIMEOUT_S = 30.0  # a batch on a busy CPU may take seconds; queries keep their short one


# The version a record holds: its version field, '' for a record without one, false for none.
_VERSION_OF = """
local function version_of(record, field)
  local held = redis.call('HGET', record, field)
  if held == false and redis.call('EXISTS', record) == 1 then held = '' end
  return held
end
"""

# KEYS: the record, its vector, its claim, the tenant's set of models with vectors; ARGV: the
# version field, the version embedded, the vector, the model. The claim goes either way; the
# vector is set (and its model recorded) only if the record is that version.
_SET_IF_CURRENT = (
    _VERSION_OF
    + """
redis.call('DEL', KEYS[3])
if version_of(KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('SADD', KEYS[4], ARGV[4])
  return 1
end
return 0
"""
)


# KEYS: the item's claim, its record, its vector in the current model's space; ARGV: the version
# field, the version this process holds, the claim's time to live, a vector's size in bytes in
# that space (0 before the first embedding names the model: no vector is looked for). Another
# process may have stored the vector (and dropped its claim) before this one read that change:
# a claim alone would then be won again and the item embedded twice. So: -1 when the record is
# no longer that version (the change stream brings the new one), the vector when one is stored
# (a rewrite of the record drops its vectors in the same step, so a stored vector is this
# version's), 1 when the claim is won, 0 when another process holds it.
_CLAIM = (
    _VERSION_OF
    + """
if version_of(KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
local size = tonumber(ARGV[4])
if size > 0 then
  local vec = redis.call('GET', KEYS[3])
  if vec and string.len(vec) == size then return vec end
end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return 1 end
return 0
"""
)


def _index_key(tenant: str, kind: str) -> str:
    if kind == "doc":
        return keys.doc_chunks_index(tenant)
    return keys.facts_index(tenant) if kind == "fact" else keys.memories_index(tenant)


def _record_key(tenant: str, kind: str, item_id: str) -> str:
    if kind == "doc":
        return keys.doc_chunk(tenant, item_id)
    return keys.fact(tenant, item_id) if kind == "fact" else keys.memory(tenant, item_id)


class SearchIndex:
    """Every tenant's :class:`TenantIndex`, with the tasks that keep them current."""

    def __init__(
        self, redis: Any, redis_bytes: Any, embedder: EmbeddingClient, *, ann_threshold: int
    ) -> None:
        self.redis = redis
        self.redis_bytes = redis_bytes
        self.embedder = embedder
        self.ann_threshold = ann_threshold
        self.tenants: dict[str, TenantIndex] = {}
        self._cursors: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ann_jobs: set[asyncio.Task[None]] = set()
        self._ann_stores: set[int] = set()  # id() of the stores with a build scheduled
        self._vectors_wanted = asyncio.Event()
        # (tenant, kind, id) of the items this process' backfill loops hold claims on
        self._embedding: set[tuple[str, str, str]] = set()
        self.changes_applied = 0

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.embedder.probe()
        loops = [("tail", self._tail_forever()), ("discover", self._discover_forever())]
        loops += [(f"backfill-{n}", self._backfill_forever()) for n in range(BACKFILL_IN_FLIGHT)]
        for name, coro in loops:
            task = asyncio.create_task(coro, name=f"search-{name}")
            self._tasks.add(task)

    async def close(self) -> None:
        tasks = [*self._tasks, *self._ann_jobs]
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: a task stuck in a cancelled Redis read must not hold the process open
            # (seen with several workers: one worker never finished its shutdown)
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            if stuck:
                log.warning("search index: %d tasks did not stop; leaving them", len(stuck))
        self._tasks.clear()

    # --- loading --------------------------------------------------------------------------------
    async def tenant(self, name: str) -> TenantIndex:
        """The tenant's index, loading it from Redis on first use."""
        index = self.tenants.get(name)
        if index is not None:
            return index
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            index = self.tenants.get(name)
            if index is None:
                index = await self._load(name)
                self.tenants[name] = index
                freeze_loaded()  # its items live as long as the process: out of the GC's way
        return index

    async def _last_change_id(self, tenant: str) -> str:
        last = await self.redis.xrevrange(keys.changes(tenant), count=1)
        return str(last[0][0]) if last else "0-0"

    async def _load(self, tenant: str) -> TenantIndex:
        cursor = await self._last_change_id(tenant)
        index = TenantIndex(tenant, ann_threshold=self.ann_threshold)
        model = self.embedder.model_id
        for kind in KINDS:
            ids = await self.redis.zrange(_index_key(tenant, kind), 0, -1)
            for start in range(0, len(ids), LOAD_CHUNK):
                chunk = ids[start : start + LOAD_CHUNK]
                for item, vec in await self._fetch(tenant, kind, chunk):
                    index[kind].upsert(item, vec)
        # the model changed while this loaded (on_model did not see this tenant yet): what
        # came before the change is of the old model's space, so every vector is read again
        while model != self.embedder.model_id:
            model = self.embedder.model_id
            await self._reload_vectors(index)
        self._cursors[tenant] = cursor
        self._schedule_ann(index)
        log.info("loaded search index of tenant %s: %s", tenant, index.sizes())
        return index

    async def _fetch(
        self, tenant: str, kind: str, ids: list[str]
    ) -> list[tuple[Item, np.ndarray | None]]:
        """Items (and their vectors in the current model's space) as Redis has them now."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for item_id in ids:
                pipe.hgetall(_record_key(tenant, kind, item_id))
            records = await pipe.execute()
        model = self.embedder.model_id
        vectors: list[bytes | None] = [None] * len(ids)
        if model is not None:
            async with self.redis_bytes.pipeline(transaction=False) as pipe:
                for item_id in ids:
                    pipe.get(keys.vector(tenant, model, kind, item_id))
                vectors = await pipe.execute()
        out: list[tuple[Item, np.ndarray | None]] = []
        for item_id, record, raw in zip(ids, records, vectors, strict=True):
            if record:
                vec = vector_from_bytes(raw, self.embedder.dimensions)
                out.append((item_from_record(kind, item_id, record), vec))
        return out

    # --- local writes ---------------------------------------------------------------------------
    async def apply_local(
        self, tenant: str, kind: str, item: Item | None, item_id: str, vec: np.ndarray | None
    ) -> None:
        """Apply this process' own write at once (read-your-writes)."""
        index = await self.tenant(tenant)
        if item is None:
            index[kind].remove(item_id)
        else:
            index[kind].upsert(item, vec)
            if vec is None:
                self._vectors_wanted.set()
            self._schedule_ann(index)

    async def apply_local_many(self, tenant: str, kind: str, items: list[Item]) -> None:
        """Apply this process' own batch of new items (without vectors: the worker adds them)."""
        index = await self.tenant(tenant)
        for item in items:
            index[kind].upsert(item, None)
        if items:
            self._vectors_wanted.set()

    def pending_vectors(self, tenant: str) -> int:
        """How many of the tenant's items wait for their vector."""
        index = self.tenants.get(tenant)
        return sum(len(ix.pending) for ix in index.kinds.values()) if index is not None else 0

    # --- change stream --------------------------------------------------------------------------
    async def _read_changes(self) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
        streams = {keys.changes(t): c for t, c in self._cursors.items()}
        if not streams:
            await asyncio.sleep(TAIL_BLOCK_MS / 1000)
            return []
        if getattr(self.redis, "topology", "standalone") == "cluster":
            replies = await asyncio.gather(
                *(self.redis.xread({s: c}, count=500) for s, c in streams.items())
            )
            out = [entry for reply in replies for entry in _stream_entries(reply)]
            if not out:
                await asyncio.sleep(0.1)
            return out
        return _stream_entries(await self.redis.xread(streams, count=500, block=TAIL_BLOCK_MS))

    async def _tail_forever(self) -> None:
        by_stream: dict[str, str] = {}
        while True:
            try:
                for stream, entries in await self._read_changes():
                    tenant = by_stream.get(stream) or _tenant_of(stream)
                    by_stream[stream] = tenant
                    await self._apply_changes(tenant, entries)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away or failing over: keep trying, never die
                log.warning("change stream read failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)

    async def _apply_changes(self, tenant: str, entries: list[tuple[str, dict[str, str]]]) -> None:
        index = self.tenants.get(tenant)
        if index is None:
            return
        if await self._trimmed_past(tenant, self._cursors.get(tenant, "0-0")):
            log.warning("the change stream of tenant %s was trimmed past this process' cursor; "
                        "reloading its index", tenant)  # fmt: skip
            async with self._locks.setdefault(tenant, asyncio.Lock()):
                self.tenants[tenant] = await self._load(tenant)
            return
        wanted: dict[tuple[str, str], dict[str, str]] = {}
        for _, fields in entries:
            kind, item_id = fields.get("kind", ""), fields.get("id", "")
            if kind in KINDS and item_id:
                wanted[(kind, item_id)] = fields
        for kind in KINDS:
            ids = [i for (k, i), f in wanted.items() if k == kind and not _already(index, k, i, f)]
            found = {item.id: (item, vec) for item, vec in await self._fetch(tenant, kind, ids)}
            for item_id in ids:
                if item_id in found:
                    item, vec = found[item_id]
                    index[kind].upsert(item, vec)
                else:
                    index[kind].remove(item_id)
        self._cursors[tenant] = entries[-1][0]
        self.changes_applied += len(entries)
        self._schedule_ann(index)

    async def _trimmed_past(self, tenant: str, cursor: str) -> bool:
        """Whether the tenant's change stream lost entries this process has not read.

        The stream keeps about ``CHANGES_MAXLEN`` entries; a process that fell that far behind
        (paused, cut off) would read on after the gap and serve what it missed as it was,
        until a restart. The entry a cursor names stays in the stream until the stream is
        trimmed past it; of a stream read from its start, entries were lost when more were
        added than it holds."""
        stream = keys.changes(tenant)
        if cursor != "0-0":
            return not await self.redis.xrange(stream, cursor, cursor, count=1)
        try:
            info = await self.redis.xinfo_stream(stream)
        except Exception:  # no stream: nothing was lost
            return False
        return int(info.get("entries-added", 0) or 0) > int(info.get("length", 0) or 0)

    # --- tenants, vectors, ANN -------------------------------------------------------------------
    async def _discover_forever(self) -> None:
        while True:
            try:
                for tenant in sorted(await self.redis.smembers(keys.tenants_index())):
                    if tenant not in self.tenants and keys.valid_tenant(tenant):
                        await self.tenant(tenant)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("tenant discovery failed; retrying", exc_info=True)
            await asyncio.sleep(DISCOVER_EVERY_S)

    async def on_model(self, model: str) -> None:
        """The embedding model changed (or became known): reload vectors of that model."""
        for index in list(self.tenants.values()):  # a tenant may load while this awaits
            await self._reload_vectors(index)

    async def _reload_vectors(self, index: TenantIndex) -> None:
        """Every item's vector read again, in the current model's space."""
        for kind in KINDS:
            index[kind].drop_vectors()
            ids = list(index[kind].items)
            for start in range(0, len(ids), LOAD_CHUNK):
                fetched = await self._fetch(index.tenant, kind, ids[start : start + LOAD_CHUNK])
                for item, vec in fetched:
                    if vec is not None:
                        index[kind].upsert(item, vec)

    async def _backfill_forever(self) -> None:
        while True:
            done = 0
            try:
                done = await self.backfill_once()
            except asyncio.CancelledError:
                raise
            except Unavailable:
                pass
            except Exception:
                log.warning("vector backfill failed; retrying", exc_info=True)
            if done:
                continue  # more may wait: the embedding service batches them together
            self._vectors_wanted.clear()
            with contextlib.suppress(TimeoutError):  # asyncio.timeout passes a cancel on
                async with asyncio.timeout(BACKFILL_EVERY_S):
                    await self._vectors_wanted.wait()

    async def _embed(
        self, index: TenantIndex, kind: str, todo: list[Item]
    ) -> tuple[list[Item], np.ndarray, str]:
        """The items' vectors. A batch the service refuses (400/413/422: these texts) is sent
        again item by item, and an item refused on its own leaves the queue (logged): retried
        each second, it would hold back every item queued behind it, this tenant's and the
        next ones'."""
        texts = [i.embed_input() for i in todo]
        try:
            rows, model = await self.embedder.embed(texts, timeout_s=BACKFILL_TIMEOUT_S)
            return todo, rows, model
        except Refused as exc:
            if len(todo) == 1:  # refused on its own already
                await self._refused(index, kind, todo[0], exc)
                return [], np.zeros((0, 0), dtype=np.float32), ""
        done: list[tuple[Item, np.ndarray, str]] = []
        for item, text in zip(todo, texts, strict=True):
            try:
                row, model = await self.embedder.embed([text], timeout_s=BACKFILL_TIMEOUT_S)
            except Refused as exc:
                await self._refused(index, kind, item, exc)
                continue
            done.append((item, row[0], model))
        # one model's rows only: the model may have changed between two of these calls
        model = done[-1][2] if done else ""
        kept = [(item, row) for item, row, m in done if m == model]
        stale = [item for item, _, m in done if m != model]
        if stale:
            await self._release(index.tenant, kind, stale)
        rows = np.stack([row for _, row in kept]) if kept else np.zeros((0, 0), dtype=np.float32)
        return [item for item, _ in kept], rows, model

    async def _refused(self, index: TenantIndex, kind: str, item: Item, exc: Refused) -> None:
        """An item the service refuses on its own leaves the queue (its words still find it)."""
        log.warning(
            "%s %s of tenant %s gets no vector (%s); words still find it",
            kind, item.id, index.tenant, exc,
        )  # fmt: skip
        VECTORS_REFUSED.inc()
        if index[kind].items.get(item.id) is item:  # not a newer version meanwhile
            index[kind].pending.pop(item.id, None)
        await self._release(index.tenant, kind, [item])

    async def backfill_once(self) -> int:
        """Embed up to a batch of items that have no vector in the current model's space."""
        if not self.embedder.available:
            return 0
        done = 0
        for index in list(self.tenants.values()):
            for kind in KINDS:
                wanted = index[kind].missing_vectors(CANDIDATES)
                todo, read, behind = await self._claim(index, kind, wanted)
                done += read
                if todo:
                    try:
                        done += await self._embed_and_store(index, kind, todo)
                    finally:
                        self._embedding.difference_update((index.tenant, kind, i.id) for i in todo)
                if behind:
                    try:
                        await self._reread(index, kind, behind[:BACKFILL_BATCH])
                    except Exception:  # Redis away: the next pass (or the stream) brings them
                        log.warning("re-reading items behind Redis failed", exc_info=True)
        return done

    async def _reread(self, index: TenantIndex, kind: str, items: list[tuple[Item, str]]) -> None:
        """Items whose record Redis holds at another version than this process (the version
        it held is given), or no longer holds, read again as the change stream would bring
        them. The stream usually brings them a moment later anyway; but a write applied here
        after another process' newer write had been read from the stream (or after a delete)
        left this process holding the older version with no change to come, waiting for a
        vector forever."""
        ids = [item.id for item, _ in items]
        fetched = {item.id: (item, vec) for item, vec in await self._fetch(index.tenant, kind, ids)}
        for old, version in items:
            # changed here meanwhile: replaced, or (a document's kept chunk) given a new
            # version in place, which may be newer than what was just read
            if not _still(index, kind, old, version):
                continue
            if old.id in fetched:
                index[kind].upsert(*fetched[old.id])
            else:
                index[kind].remove(old.id)
        self._schedule_ann(index)

    async def _embed_and_store(self, index: TenantIndex, kind: str, todo: list[Item]) -> int:
        """Embed ``todo`` (claimed) and store each vector still current; how many were kept."""
        try:
            todo, rows, model = await self._embed(index, kind, todo)
        except BaseException:  # embeddings away: the next pass (here or anywhere) retries
            await self._release(index.tenant, kind, todo)
            raise
        if not todo:
            return 0
        # a vector is stored only while the record still holds the version embedded:
        # a write or a delete meanwhile (its own vector, or none) is never overwritten
        # with the old text's vector, which other gateways and restarts would then load
        field = VERSION_FIELD[kind]
        async with self.redis.pipeline(transaction=False) as pipe:
            for item, vec in zip(todo, rows, strict=True):
                pipe.eval(
                    _SET_IF_CURRENT, 4, _record_key(index.tenant, kind, item.id),
                    keys.vector(index.tenant, model, kind, item.id),
                    keys.vector_claim(index.tenant, kind, item.id),
                    keys.vector_models(index.tenant),
                    field, item.version, vector_bytes(vec), model,
                )  # fmt: skip
            stored = await pipe.execute()
        kept = [
            (item, vec) for item, vec, ok in zip(todo, rows, stored, strict=True) if int(ok) == 1
        ]
        if kept:  # other gateways then read the vector instead of embedding it again
            async with self.redis.pipeline(transaction=False) as pipe:
                for item, _ in kept:
                    pipe.execute_command(
                        *change_command(index.tenant, "upsert", kind, item.id, item.version, True)
                    )
                await pipe.execute()
        for item, vec in kept:
            if index[kind].items.get(item.id) is item:
                index[kind].set_vector(item.id, vec)
        # a refused item waits for its change to arrive (the next pass, a second on)
        self._schedule_ann(index)
        return len(kept)

    async def _claim(
        self, index: TenantIndex, kind: str, candidates: list[Item]
    ) -> tuple[list[Item], int, list[tuple[Item, str]]]:
        """Up to a batch of ``candidates`` that no other loop or gateway process is embedding;
        how many of the others got the vector another process stored for them meanwhile (this
        process had not yet read that change): each item is embedded once; and the ones whose
        record is no longer the version this process holds. A claim
        lapses by itself if its holder dies. Items are marked as this process' before each
        await, so its other loop looks past them; the caller unmarks the ones returned."""
        tenant, model, dim = index.tenant, self.embedder.model_id, self.embedder.dimensions
        field = VERSION_FIELD[kind]
        known = model is not None and dim is not None
        taken: list[Item] = []
        behind: list[tuple[Item, str]] = []
        read = 0
        pos = 0
        while len(taken) < BACKFILL_BATCH and pos < len(candidates):
            part = candidates[pos : pos + BACKFILL_BATCH - len(taken)]
            pos += len(part)
            part = [i for i in part if (tenant, kind, i.id) not in self._embedding]
            if not part:
                continue
            self._embedding.update((tenant, kind, i.id) for i in part)
            try:
                async with self.redis_bytes.pipeline(transaction=False) as pipe:
                    for item in part:
                        claim = keys.vector_claim(tenant, kind, item.id)
                        pipe.eval(
                            _CLAIM, 3, claim, _record_key(tenant, kind, item.id),
                            keys.vector(tenant, model, kind, item.id) if known else claim,
                            field, item.version, CLAIM_TTL_MS, 4 * dim if known else 0,
                        )  # fmt: skip
                    sent = [item.version for item in part]  # a kept chunk's changes in place
                    replies = await pipe.execute()
            except BaseException:
                # which of ``part`` were won is unknown: those claims lapse by themselves (a
                # delete could drop another process' claim)
                self._embedding.difference_update((tenant, kind, i.id) for i in part)
                self._embedding.difference_update((tenant, kind, i.id) for i in taken)
                await self._release(tenant, kind, taken)
                raise
            same_space = model == self.embedder.model_id  # no model change while it ran
            for item, version, reply in zip(part, sent, replies, strict=True):
                if reply == 1:
                    taken.append(item)
                    continue
                self._embedding.discard((tenant, kind, item.id))
                if reply == -1:
                    behind.append((item, version))
                elif isinstance(reply, bytes) and same_space:  # stored elsewhere: read it
                    vec = vector_from_bytes(reply, dim)
                    if vec is not None and _still(index, kind, item, version):
                        index[kind].set_vector(item.id, vec)
                        read += 1
        if read:
            self._schedule_ann(index)
        return taken, read, behind

    async def _release(self, tenant: str, kind: str, items: list[Item]) -> None:
        if items:
            with contextlib.suppress(Exception):  # a claim left behind lapses by itself
                await self.redis.delete(*(keys.vector_claim(tenant, kind, i.id) for i in items))

    def _schedule_ann(self, index: TenantIndex) -> None:
        for kind_index in index.kinds.values():
            store = kind_index.vectors
            # one build a store at a time: the store marks itself building only once its
            # thread runs, and two loops (or a write and a loop) may ask before that
            if store is None or id(store) in self._ann_stores:
                continue
            if store.needs_ann_work(kind_index.next_row):
                upto = kind_index.next_row
                task = asyncio.create_task(asyncio.to_thread(store.build_ann, upto))
                self._ann_jobs.add(task)
                self._ann_stores.add(id(store))
                task.add_done_callback(functools.partial(self._ann_done, id(store)))

    def _ann_done(self, store: int, task: asyncio.Task[None]) -> None:
        self._ann_jobs.discard(task)
        self._ann_stores.discard(store)

    def stats(self) -> dict[str, Any]:
        return {
            "tenants": len(self.tenants),
            "model": self.embedder.model_id,
            "changes_applied": self.changes_applied,
        }


def _still(index: TenantIndex, kind: str, item: Item, version: str) -> bool:
    """True while the index holds ``item`` at ``version``: not replaced, and not given a new
    version in place (a document's kept chunk) while this process awaited Redis."""
    return index[kind].items.get(item.id) is item and item.version == version


def _already(index: TenantIndex, kind: str, item_id: str, fields: dict[str, str]) -> bool:
    """True when the change is one this process has already applied (its own write)."""
    item = index[kind].items.get(item_id)
    version = fields.get("v")
    return bool(
        fields.get("op") == "upsert"
        and version
        and item is not None
        and item.version == version
        and (item.has_vector or fields.get("vec") != "1")
    )


def _tenant_of(stream: str) -> str:
    # hm:{t:<tenant>}:changes
    return stream.split("{t:", 1)[1].split("}", 1)[0]


def _stream_entries(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """XREAD's reply as (stream, [(id, fields)]), for RESP2 (a list) and RESP3 (a dict)."""
    if not reply:
        return []
    out: list[tuple[str, list[tuple[str, dict[str, str]]]]] = []
    if isinstance(reply, dict):
        for stream, value in reply.items():
            entries = value[0] if value and isinstance(value[0], list) else value
            out.append((str(stream), [(str(i), dict(f)) for i, f in entries]))
        return out
    for stream, entries in reply:
        out.append((str(stream), [(str(i), dict(f)) for i, f in entries]))
    return out
