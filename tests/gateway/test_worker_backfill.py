"""Several gateway processes (workers) on one Redis embed each stored item once (issue 17)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from support.embedding import shared_embedding_url
from support.gateway import RunningGateway, running_gateway
from support.waiting import wait_until

CLOSED = {"inference_url": "http://127.0.0.1:9", "trainer_url": "http://127.0.0.1:9"}
ITEMS = 200


def _texts_embedded() -> float:
    return REGISTRY.get_sample_value("hivemind_embedding_batch_texts_sum") or 0.0


def _pending(gw: RunningGateway) -> int:
    with gw.client("acme", "read") as c:
        r = c.get("/v1/rag/stats")
        r.raise_for_status()
        return int(r.json()["pending_vectors"])


@contextlib.contextmanager
def _two_gateways(
    redis_url: str, internal_token: str, data_dir: Path
) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    """Two gateway processes on one Redis and one embedding service, holding acme's index."""
    embedding = shared_embedding_url(internal_token)
    with (
        running_gateway(
            redis_url, internal_token, data_dir, embedding_url=embedding, **CLOSED
        ) as a,
        running_gateway(
            redis_url, internal_token, data_dir, embedding_url=embedding, **CLOSED
        ) as b,
    ):
        a.keys = b.keys  # one set of keys for both
        assert _pending(a) == 0 and _pending(b) == 0  # both hold the tenant's index now
        yield a, b


def test_two_gateways_embed_each_stored_memory_once(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    with _two_gateways(redis_url, internal_token, data_dir) as (a, b):
        before = _texts_embedded()
        memories = [
            {"text": f"note {i}: the deploy of service {i % 7} moved"} for i in range(ITEMS)
        ]
        with a.client("acme", "write") as c:
            r = c.post("/v1/memories/batch", json={"memories": memories})
            assert r.status_code == 200, r.text
        wait_until(
            lambda: _pending(a) == 0 and _pending(b) == 0,
            timeout=600,
            interval=0.2,
            what="every memory to have its vector in both gateways",
        )
        embedded = _texts_embedded() - before
        # each item once; without the claim both processes embed most of them
        assert ITEMS <= embedded < ITEMS * 1.2, embedded


async def _paused() -> int:  # a backfill loop that does nothing
    await asyncio.sleep(0.05)
    return 0


class _Held:
    """Two gateways whose backfill loops wait, and a way to stop b reading changes."""

    def __init__(self, a: RunningGateway, b: RunningGateway) -> None:
        self.a, self.b = a, b
        self.search_a, self.search_b = a.app.state.gateway.search, b.app.state.gateway.search
        self.search_a.backfill_once = _paused
        self.search_b.backfill_once = _paused
        self._cut = threading.Event()

    async def _cut_off(self) -> list[object]:
        self._cut.set()  # once called, no read is in flight any more
        await asyncio.sleep(0.1)
        return []

    def cut_b_off(self) -> None:
        self.search_b._read_changes = self._cut_off
        wait_until(self._cut.is_set, timeout=30, what="b's change reader to stop")


@contextlib.contextmanager
def _two_held(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[_Held]:
    with _two_gateways(redis_url, internal_token, data_dir) as (a, b):
        yield _Held(a, b)


def test_a_gateway_reads_a_vector_another_stored_before_it_read_that_change(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """A gateway stores a vector and drops its claim; another gateway that has not yet read
    that change (a loaded machine: CI saw 263 texts embedded for 200) won the free claim and
    embedded the item again. It now reads the stored vector instead."""
    with _two_held(redis_url, internal_token, data_dir) as held:
        a, b = held.a, held.b
        before = _texts_embedded()
        memories = [{"text": f"note {i}: the cache of node {i % 3} warmed"} for i in range(ITEMS)]
        with a.client("acme", "write") as c:
            assert c.post("/v1/memories/batch", json={"memories": memories}).status_code == 200
        # b has read the items (without vectors), then reads no more changes
        wait_until(lambda: _pending(b) == ITEMS, timeout=60, what="b to read the new items")
        held.cut_b_off()
        del held.search_a.backfill_once  # a embeds every item and drops its claims
        wait_until(lambda: _pending(a) == 0, timeout=600, what="a to embed every item")
        assert _texts_embedded() - before == ITEMS
        del held.search_b.backfill_once  # b still waits for ITEMS vectors, and no claim is held
        wait_until(lambda: _pending(b) == 0, timeout=60, what="b to have every vector")
        assert _texts_embedded() - before == ITEMS  # none embedded twice
        del held.search_b._read_changes
        with b.client("acme", "read") as c:
            hits = c.post("/v1/memories/search", json={"query": "cache of node warmed"}).json()
        assert hits["data"]


def test_a_gateway_that_missed_a_delete_drops_the_item_when_it_looks_for_its_vector(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """An item this process holds without a vector, whose record Redis no longer holds (a
    change this process missed or applied out of order, with none to come) waited for its
    vector forever (claimed, and before that embedded, on every pass), and searches here kept
    finding it. It is now read again from Redis, as the change stream would bring it."""
    with _two_held(redis_url, internal_token, data_dir) as held:
        a, b = held.a, held.b
        with a.client("acme", "write") as c:
            for item_id, text in (("gone", "the walrus ledger"), ("kept", "the heron ledger")):
                r = c.post("/v1/memories", json={"id": item_id, "text": text})
                assert r.status_code == 201, r.text
        wait_until(lambda: _pending(b) == 2, timeout=60, what="b to read both memories")
        held.cut_b_off()
        with a.client("acme", "write") as c:
            assert c.delete("/v1/memories/gone").status_code == 204
        del held.search_b.backfill_once  # b never reads the delete, but looks for both vectors
        wait_until(lambda: _pending(b) == 0, timeout=60, what="b to settle both memories")

        def found(word: str) -> bool:
            with b.client("acme", "read") as c:
                hits = c.post("/v1/memories/search", json={"query": word}).json()["data"]
            return any(word in h["text"] for h in hits)

        assert found("heron") and not found("walrus")


def test_a_gateway_keeps_two_batches_at_the_embedding_service(
    redis_url: str, internal_token: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch at a time left the embedding service's workers idle between two batches (the
    round trip, the service gathering and tokenizing the next): each gateway process now has
    two at the service, and its two loops never take the same item."""
    embedding = shared_embedding_url(internal_token)
    with running_gateway(
        redis_url, internal_token, data_dir, embedding_url=embedding, **CLOSED
    ) as gw:
        assert _pending(gw) == 0  # the gateway holds the tenant's index now
        search = gw.app.state.gateway.search
        real = search.embedder.embed
        sent: list[str] = []
        calls = {"now": 0, "most": 0}

        async def embed(texts: list[str], *, timeout_s: float | None = None) -> Any:
            calls["now"] += 1
            calls["most"] = max(calls["most"], calls["now"])
            try:
                # the first batch waits (at most 20 s) for a second one to be sent beside it
                deadline = time.monotonic() + 20
                while calls["most"] < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                sent.extend(texts)
                return await real(texts, timeout_s=timeout_s)
            finally:
                calls["now"] -= 1

        monkeypatch.setattr(search.embedder, "embed", embed)
        memories = [{"text": f"note {i}: the backup of host {i % 5} ran"} for i in range(ITEMS)]
        with gw.client("acme", "write") as c:
            r = c.post("/v1/memories/batch", json={"memories": memories})
            assert r.status_code == 200, r.text
        wait_until(lambda: _pending(gw) == 0, timeout=600, interval=0.2, what="every vector in")
        assert calls["most"] == 2
        assert sorted(sent) == sorted(m["text"] for m in memories)  # each item once


def test_a_gateway_that_fell_behind_a_trimmed_change_stream_reloads(
    redis_url: str, internal_token: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change stream keeps about CHANGES_MAXLEN entries. A gateway that fell further behind
    (paused, cut off) once read on after the gap and never saw the items it missed."""
    from hivemind_common import keys

    monkeypatch.setattr(keys, "CHANGES_MAXLEN", 10)  # trimmed in whole nodes of 100 entries
    with (
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as a,
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as b,
    ):
        a.keys = b.keys
        assert _pending(b) == 0  # b holds the tenant's index and tails its stream
        search = b.app.state.gateway.search

        async def cut_off() -> list[object]:
            await asyncio.sleep(0.1)
            return []

        search._read_changes = cut_off  # b reads nothing from now on
        memories = [{"text": f"entry {i} zebra{i}"} for i in range(350)]
        with a.client("acme", "write") as c:
            assert c.post("/v1/memories/batch", json={"memories": memories}).status_code == 200
        del search._read_changes  # b reads again, from its old cursor

        def b_finds(word: str) -> bool:
            with b.client("acme", "read") as c:
                hits = c.post("/v1/memories/search", json={"query": word}).json()["data"]
            return any(word in h["text"] for h in hits)

        wait_until(lambda: b_finds("zebra349"), timeout=30, what="b to catch up")
        # the first entries were trimmed before b read them: only a reload brings them
        wait_until(lambda: b_finds("zebra0"), timeout=30, what="b to reload after the gap")


def test_one_graph_build_a_store_at_a_time() -> None:
    """Two backfill loops (or a write and a loop) asked for a graph build of the same store
    before the first build's thread had marked it: both ran, adding the same rows twice."""
    import threading
    from types import SimpleNamespace

    from hivemind_gateway.search.sync import SearchIndex

    release = threading.Event()
    builds: list[int] = []

    class Store:
        def needs_ann_work(self, upto: int) -> bool:
            return True  # as a store says until its build's thread has started

        def build_ann(self, upto: int) -> None:
            builds.append(upto)
            assert release.wait(60)

    search = SearchIndex(None, None, None, ann_threshold=1)  # type: ignore[arg-type]
    index = SimpleNamespace(kinds={"memory": SimpleNamespace(vectors=Store(), next_row=7)})

    async def go() -> None:
        search._schedule_ann(index)  # type: ignore[arg-type]
        search._schedule_ann(index)  # type: ignore[arg-type]
        assert len(search._ann_jobs) == 1
        release.set()
        await asyncio.wait_for(asyncio.gather(*search._ann_jobs), 60)
        search._schedule_ann(index)  # type: ignore[arg-type]
        assert len(search._ann_jobs) == 1  # a later build once the first is done
        await asyncio.wait_for(asyncio.gather(*search._ann_jobs), 60)

    asyncio.run(go())
    assert builds == [7, 7]


def test_a_reread_never_takes_an_item_back_past_a_version_given_here_meanwhile() -> None:
    """A document's kept chunk gets its new version in place (same object). A reread that
    read Redis before that write must not put the older version back over it."""
    from hivemind_gateway.search.index import Item, TenantIndex
    from hivemind_gateway.search.sync import SearchIndex

    search = SearchIndex(None, None, None, ann_threshold=10_000)  # type: ignore[arg-type]
    index = TenantIndex("acme", ann_threshold=10_000)
    held = Item(kind="memory", id="m", text="the old text", version="v1")
    index["memory"].upsert(held, None)
    gone = Item(kind="memory", id="g", text="a deleted one", version="v1")
    index["memory"].upsert(gone, None)

    async def fetch(tenant: str, kind: str, ids: list[str]) -> list[tuple[Item, None]]:
        held.version = "v3"  # written here while Redis was read
        return [(Item(kind="memory", id="m", text="the v2 text", version="v2"), None)]

    search._fetch = fetch  # type: ignore[method-assign]
    asyncio.run(search._reread(index, "memory", [(held, "v1"), (gone, "v1")]))
    assert index["memory"].items["m"] is held and held.version == "v3"
    assert "g" not in index["memory"].items  # Redis no longer holds it
