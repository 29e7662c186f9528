"""Memory recall on real conversations: the LoCoMo development split through the API.

Starts a redis-server, the embedding service and one gateway (each its own process). Every
conversation is a tenant of its own; every turn is stored as a memory (``bench.locomo_data``),
through ``POST /v1/memories/batch`` when the gateway has it, else one ``POST /v1/memories`` at
a time (8 in flight). Then each question of categories 1-4 is searched with
``POST /v1/memories/search`` (top 10) and scored by recall@5/@10, overall and per category.

Beside it, in the same run and on the same vectors (from the same embedding service), three
in-process references: dense (cosine over the turns), plain BM25 (lower-cased words, k1 1.2,
b 0.75, no stemming, no stop words) and their reciprocal-rank fusion (k = 60).

Then speed at scale: 10k memories in one tenant through the batch route (memories/s, time
until every vector is in, search p50/p95 at that size).

Writes ``locomo.json``. A shared 2-core machine runs it all, load generator included: the
timings are noisy (the load average is recorded beside them).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:  # reuse the fixtures' redis-server starter
    sys.path.insert(0, str(REPO / "tests"))

from bench.bench_embedding import latency_summary  # noqa: E402
from bench.bench_gateway_wrk import cpu_info  # noqa: E402
from bench.bench_memory_api import memory_stack  # noqa: E402
from bench.locomo_data import DEFAULT_DIR, Conversation, Recall, load  # noqa: E402

STORE_CONCURRENCY = 8
BATCH = 200
SCALE_TARGET = 10_000
CONNECTIONS = 16  # concurrent search clients at 10k
BURSTS = (100, 200, 400)  # batch sizes whose time to searchable-by-meaning is measured
VECTOR_WAIT_S = 300.0
SCALE_VECTOR_WAIT_S = 600.0  # embedding 10k texts is bound by the embedding service's CPU


def make_keys(redis_url: str, tenants: list[str]) -> dict[str, str]:
    """A write key per tenant, made straight in Redis."""
    from hivemind_common.auth import ApiKeyStore
    from hivemind_common.redis import connect_redis

    async def make() -> dict[str, str]:
        redis = connect_redis(redis_url)
        try:
            store = ApiKeyStore(redis)
            return {t: (await store.create(tenant=t, role="write"))[1] for t in tenants}
        finally:
            await redis.aclose()

    return asyncio.run(make())


# --- storing ---------------------------------------------------------------------------------
async def _store_one_by_one(c: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    queue = iter(bodies)

    async def worker() -> None:
        for body in queue:
            r = await c.post("/v1/memories", json=body)
            r.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(STORE_CONCURRENCY)))


async def _store_batched(c: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    for start in range(0, len(bodies), BATCH):
        r = await c.post("/v1/memories/batch", json={"memories": bodies[start : start + BATCH]})
        r.raise_for_status()
        failed = [i for i in r.json()["results"] if i.get("error")]
        if failed:
            raise RuntimeError(f"batch store failed for {len(failed)} items: {failed[:2]}")


async def _has_batch(c: httpx.AsyncClient) -> bool:
    r = await c.post("/v1/memories/batch", json={"memories": []})
    return r.status_code != 404 and r.status_code != 405


async def _pending_vectors(c: httpx.AsyncClient) -> int:
    body = (await c.get("/v1/rag/stats")).json()
    return int(body.get("pending_vectors", 0))


async def _wait_for_vectors(c: httpx.AsyncClient, limit_s: float = VECTOR_WAIT_S) -> float:
    """Seconds until the tenant has no memory without a vector (``limit_s`` at most)."""
    started = time.perf_counter()
    deadline = started + limit_s
    while await _pending_vectors(c) > 0 and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


# --- the API run --------------------------------------------------------------------------------
async def _through_api(
    url: str, keys: dict[str, str], conversations: list[Conversation]
) -> dict[str, Any]:
    recall = Recall()
    store_s = vectors_s = 0.0
    stored = 0
    latencies: list[float] = []
    batched = False
    for conv in conversations:
        headers = {"Authorization": f"Bearer {keys[conv.name]}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
            batched = await _has_batch(c)
            bodies = [t.memory(conv.name) for t in conv.turns]
            t = time.perf_counter()
            await (_store_batched if batched else _store_one_by_one)(c, bodies)
            store_s += time.perf_counter() - t
            vectors_s += await _wait_for_vectors(c)
            stored += len(bodies)
            for q in conv.questions:
                t = time.perf_counter()
                r = await c.post("/v1/memories/search", json={"query": q.text, "top_k": 10})
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                ranked = [h["metadata"].get("dia_id", "") for h in r.json()["data"]]
                recall.add(q, ranked)
    return {
        "recall": recall.summary(),
        "stored": stored,
        "store_route": "batch" if batched else "single (8 in flight)",
        "store_s": round(store_s, 2),
        "store_per_s": round(stored / store_s, 1),
        "until_all_vectors_s": round(vectors_s, 2),
        "search": latency_summary(latencies),
    }


async def _concurrent(
    c: httpx.AsyncClient, route: str, questions: list[str], body: dict[str, Any]
) -> dict[str, Any]:
    """``CONNECTIONS`` clients, one request in flight each, every request a different
    question (no two alike, so no cache can answer): latency and requests/s."""
    latencies: list[float] = []
    todo = iter(questions)

    async def client() -> None:
        for q in todo:
            t = time.perf_counter()
            r = await c.post(route, json={"query": q, **body})
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    return {
        **latency_summary(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


async def _burst(
    c: httpx.AsyncClient, turns: list[tuple[str, Any]], size: int, n: int
) -> dict[str, Any]:
    """A batch of ``size`` new memories into the 10k tenant: seconds until every one of them
    is searchable by meaning (has its vector), measured from the start of the request."""
    bodies = [t.memory(f"{name}burst{n}") for name, t in turns[:size]]
    t = time.perf_counter()
    (await c.post("/v1/memories/batch", json={"memories": bodies})).raise_for_status()
    stored_s = time.perf_counter() - t
    while await _pending_vectors(c) > 0 and time.perf_counter() - t < VECTOR_WAIT_S:
        await asyncio.sleep(0.02)
    return {
        "memories": size,
        "stored_s": round(stored_s, 3),
        "searchable_by_meaning_s": round(time.perf_counter() - t, 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- in-process references ------------------------------------------------------------------
_WORD = re.compile(r"\w+")


def _plain_bm25(docs: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    toks = [_WORD.findall(d.lower()) for d in docs]
    df: Counter[str] = Counter(w for t in toks for w in set(t))
    avg = sum(len(t) for t in toks) / max(len(toks), 1)
    n = len(docs)
    scores = np.zeros(n)
    for term in set(_WORD.findall(query.lower())):
        if term not in df:
            continue
        idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        for i, t in enumerate(toks):
            tf = t.count(term)
            if tf:
                scores[i] += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(t) / avg))
    return scores


def _rrf(*rankings: np.ndarray, k: int = 60) -> np.ndarray:
    fused = np.zeros(rankings[0].shape[0])
    for order in rankings:
        fused[order] += 1.0 / (k + np.arange(1, order.shape[0] + 1))
    return fused


async def _embed(url: str, token: str, texts: list[str]) -> np.ndarray:
    headers = {"Authorization": f"Bearer {token}"}
    rows = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
        for start in range(0, len(texts), 64):
            r = await c.post("/embed", json={"texts": texts[start : start + 64]})
            r.raise_for_status()
            rows.append(np.asarray(r.json()["embeddings"], dtype=np.float32))
    return np.concatenate(rows)


def references(emb_url: str, token: str, conversations: list[Conversation]) -> dict[str, Any]:
    """Dense, plain BM25 and RRF of the two, computed here on the same data."""
    recalls = {"dense": Recall(), "bm25": Recall(), "rrf": Recall()}
    for conv in conversations:
        docs = [t.text for t in conv.turns]
        ids = [t.dia_id for t in conv.turns]
        doc_vecs = asyncio.run(_embed(emb_url, token, docs))
        q_vecs = asyncio.run(_embed(emb_url, token, [q.text for q in conv.questions]))
        for q, qv in zip(conv.questions, q_vecs, strict=True):
            dense = np.argsort(-(doc_vecs @ qv), kind="stable")
            lexical = np.argsort(-_plain_bm25(docs, q.text), kind="stable")
            fused = np.argsort(-_rrf(dense, lexical), kind="stable")
            for name, order in (("dense", dense), ("bm25", lexical), ("rrf", fused)):
                recalls[name].add(q, [ids[i] for i in order[:10]])
    return {name: r.summary() for name, r in recalls.items()}


# --- speed at 10k ------------------------------------------------------------------------------
async def _at_scale(url: str, key: str, conversations: list[Conversation]) -> dict[str, Any]:
    """10k memories in one tenant via the batch route: ingest rate, vectors, search latency."""
    turns = [(c.name, t) for c in conversations for t in c.turns]
    bodies: list[dict[str, Any]] = []
    copy = 0
    while len(bodies) < SCALE_TARGET:
        bodies += [t.memory(f"{name}c{copy}") for name, t in turns]
        copy += 1
    bodies = bodies[:SCALE_TARGET]
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
        if not await _has_batch(c):
            return {"skipped": "no batch route"}
        t = time.perf_counter()
        await _store_batched(c, bodies)
        ingest_s = time.perf_counter() - t
        probe = conversations[0].turns[len(conversations[0].turns) // 2].text
        r = await c.post("/v1/memories/search", json={"query": probe, "top_k": 5})
        lexical_at_once = r.status_code == 200 and any(h["text"] == probe for h in r.json()["data"])
        vectors_s = await _wait_for_vectors(c, SCALE_VECTOR_WAIT_S)
        still_pending = await _pending_vectors(c)
        questions = [q.text for conv in conversations for q in conv.questions][:300]
        latencies = []
        for q in questions:
            t = time.perf_counter()
            r = await c.post("/v1/memories/search", json={"query": q, "top_k": 10})
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
        concurrent = {
            route: await _concurrent(c, route, questions, body)
            for route, body in (
                ("/v1/memories/search", {"top_k": 10}),
                ("/v1/rag/context", {}),
            )
        }
        bursts = [await _burst(c, turns, size, n) for n, size in enumerate(BURSTS)]
    return {
        "memories": len(bodies),
        "ingest_s": round(ingest_s, 2),
        "ingest_per_s": round(len(bodies) / ingest_s, 1),
        "searchable_lexically_at_once": lexical_at_once,
        "waited_for_vectors_s": round(vectors_s, 2),
        "vectors_pending_when_searched": still_pending,
        "embedded_per_s": round((len(bodies) - still_pending) / (ingest_s + vectors_s), 1),
        "search": latency_summary(latencies),
        f"search_{CONNECTIONS}_connections": concurrent,
        "bursts": bursts,
    }


def in_process(conversations: list[Conversation], size: int = SCALE_TARGET) -> dict[str, Any]:
    """The search alone, in process: ``size`` LoCoMo turns in one tenant's index (random unit
    vectors: the cost does not depend on their values), each of 300 questions searched as
    ``POST /v1/memories/search`` (``score_kind``) and as retrieval (``select``) do."""
    from hivemind_gateway.rag.gate import score_kind
    from hivemind_gateway.rag.scoring import GateConfig
    from hivemind_gateway.rag.service import select
    from hivemind_gateway.search.index import Item, TenantIndex, mentions_time
    from hivemind_gateway.search.runtime import limit_blas_threads
    from hivemind_gateway.storage_schema import parse_time

    limit_blas_threads()  # as the gateway runs
    rng = np.random.default_rng(0)
    turns = [(c.name, t) for c in conversations for t in c.turns]
    index = TenantIndex("bench")
    for n in range(size):
        name, t = turns[n % len(turns)]
        vec = rng.standard_normal(384).astype(np.float32)
        item = Item(
            kind="memory", id=f"m{n}", text=t.text, version=f"{n:08d}", speaker=t.speaker,
            session_id=f"{name}-s{t.session}-c{n // len(turns)}", when=parse_time(t.date),
            temporal=mentions_time(t.text),
        )  # fmt: skip
        index["memory"].upsert(item, vec / np.linalg.norm(vec))
    questions = [q.text for c in conversations for q in c.questions][:300]
    vectors = rng.standard_normal((len(questions), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cfg = GateConfig()
    out: dict[str, Any] = {"memories": size}
    for name, run in (
        ("search", lambda q, v: score_kind(index, "memory", v, q, k=10, cfg=cfg)),
        ("select", lambda q, v: select(index, v, q, cfg=cfg)),
    ):
        latencies = []
        for q, v in zip(questions, vectors, strict=True):
            t0 = time.perf_counter()
            run(q, v)
            latencies.append(time.perf_counter() - t0)
        out[name] = latency_summary(latencies)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _write(out_dir: Path, result: dict[str, Any]) -> None:
    """Write what is measured so far (a later phase failing keeps the earlier ones)."""
    (out_dir / "locomo.json").write_text(json.dumps(result, indent=2))


def main(out_dir: Path) -> dict[str, Any]:
    if not any(DEFAULT_DIR.glob("*.json")):  # the data is not shipped with the repository
        return {"skipped": f"no LoCoMo conversations in {DEFAULT_DIR} (HIVEMIND_LOCOMO_DIR)"}
    conversations = load()
    token = secrets.token_hex(16)
    result: dict[str, Any] = {"load_average_before": os.getloadavg()}
    result["in_process_10k"] = in_process(conversations)
    with tempfile.TemporaryDirectory() as tmp, memory_stack(Path(tmp), token) as stack:
        gw_url, emb_url = stack.gateway_url, stack.embedding_url
        tenants = [c.name for c in conversations] + ["locomoscale"]
        keys = make_keys(stack.redis_url, tenants)
        result["api"] = asyncio.run(_through_api(gw_url, keys, conversations))
        _write(out_dir, result)
        result["references"] = references(emb_url, token, conversations)
        _write(out_dir, result)
        if os.environ.get("HIVEMIND_BENCH_SKIP_SCALE") != "1":
            result["at_10k"] = asyncio.run(_at_scale(gw_url, keys["locomoscale"], conversations))
    result["questions"] = sum(len(c.questions) for c in conversations)
    result["load_average_after"] = os.getloadavg()
    result["note"] = "gateway, embedding, redis and the load generator share 2 busy cores"
    result["machine"] = cpu_info()
    _write(out_dir, result)
    api = result["api"]["recall"]["all"]
    return {"recall@5": api["recall@5"], "recall@10": api["recall@10"]}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--in-process"]:  # only the search itself, at 10k
        print(json.dumps(in_process(load()), indent=2))
        raise SystemExit(0)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
