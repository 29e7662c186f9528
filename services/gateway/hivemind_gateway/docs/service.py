"""The reference library: documents in named collections, their chunks in the search index.

A document's id is derived from its collection and source, so sending the same source again
replaces it. It is stored as one hash (content hash, type, metadata, the ids of its chunks, the
paths it links to); each chunk as a hash of its own, listed in the tenant's chunk index, which
the search index loads and tails like facts and memories (kind ``doc``).

A chunk's id is derived from what is embedded (source, heading, text): when a changed document
is sent again, chunks whose text did not change keep their id and their vector (only their line
range is updated), new chunks wait for the search index's worker to embed them, and chunks that
are gone are deleted with their vectors. A document whose content hash and chunking did not
change is not touched at all: re-sending an unchanged tree does no embedding work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hivemind_common import keys
from hivemind_common.errors import Conflict, Invalid, NotFound, TooLarge
from hivemind_common.redis.replies import as_dict
from hivemind_gateway.claims import write_lock
from hivemind_gateway.docs.chunking import (
    Chunk,
    DocType,
    chunk_sizes,
    chunk_text,
    detect,
    summary,
)
from hivemind_gateway.docs.links import SourceIndex, find_links, target_paths
from hivemind_gateway.docs.schemas import (
    ChunkPublic,
    DocDetail,
    DocHit,
    DocHits,
    DocIn,
    DocPublic,
    DocResult,
    DocsCreate,
    DocsPublic,
    DocsSearch,
    DocsWritten,
)
from hivemind_gateway.docs.tokens import embedder_limit, served_tokenizer
from hivemind_gateway.quotas import RUN_PACKED, pack_commands, reserve_items
from hivemind_gateway.rag.scoring import (
    GateConfig,
    Scored,
    by_document,
    definitions_first,
    fold_sections,
    rank,
)
from hivemind_gateway.search.index import DocRef, Item, doc_filter, embed_header
from hivemind_gateway.search.spaces import drop_late_vectors, drop_vectors, vector_models
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.storage_schema import change_command, load_json

CANDIDATES = 50
FOLD_SPARE = 3  # candidates per wanted hit when a search folds each section's chunks into one


def doc_id(collection: str, source: str) -> str:
    digest = hashlib.sha256(f"{collection}\0{source}".encode()).hexdigest()
    return f"d{digest[:31]}"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cite(source: str, start: int, end: int) -> str:
    return f"{source}:{start}-{end}" if end != start else f"{source}:{start}"


@dataclass
class Plan:
    """What one document's write does."""

    doc: DocIn
    collection: str
    id: str
    hash: str
    doc_type: DocType
    language: str
    chunking: str
    old: dict[str, str]
    chunks: list[Chunk] | None = None
    chunk_ids: list[str] | None = None
    links: list[str] | None = None
    context: str = ""  # the document's one-line summary, in every chunk's header


def _chunk_ids(did: str, source: str, chunks: list[Chunk], context: str) -> list[str]:
    """Ids from what is embedded, so an unchanged chunk keeps its id (and vector)."""
    seen: dict[str, int] = {}
    out = []
    for c in chunks:
        header = embed_header(source, c.heading, context)
        digest = hashlib.sha256(f"{header}\n{c.text}".encode()).hexdigest()[:20]
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        out.append(f"{did}.{digest}" + (f"-{n}" if n else ""))
    return out


def _documents(body: DocsCreate) -> list[DocIn]:
    single = body.source is not None or body.text is not None
    if single and body.documents is not None:
        raise Invalid("send either source and text, or documents, not both", param="documents")
    if body.documents is not None:
        # the body's type and metadata are the batch's defaults, as its collection is (they
        # were dropped without a word): a document's own, when it names them, comes first
        return [
            doc.model_copy(
                update={
                    "type": doc.type or body.type,
                    "metadata": doc.metadata
                    if "metadata" in doc.model_fields_set
                    else body.metadata,
                }
            )
            for doc in body.documents
        ]
    if body.source is None or body.text is None:
        raise Invalid("a document needs source and text (or send documents)", param="source")
    return [DocIn(source=body.source, text=body.text, type=body.type, metadata=body.metadata)]


def _public(did: str, record: dict[str, str]) -> DocPublic:
    metadata = load_json(record.get("metadata"), {})
    return DocPublic(
        id=did,
        collection=record.get("collection", ""),
        source=record.get("source", ""),
        hash=record.get("hash", ""),
        type=record.get("type", ""),
        metadata=metadata if isinstance(metadata, dict) else {},
        chunks=len(load_json(record.get("chunk_ids"), [])),
        tokens=int(record.get("tokens") or 0),
        links=[str(x) for x in load_json(record.get("links"), [])],
        created_at=float(record.get("created_at") or 0),
        updated_at=float(record.get("updated_at") or 0),
    )


async def put_documents(
    *,
    redis: Any,
    search: SearchIndex,
    tenant: str,
    body: DocsCreate,
    max_doc_chars: int,
    default_chunk_tokens: int,
    default_overlap_tokens: int,
    max_chunks: int = 10_000,
) -> DocsWritten:
    """Store (or replace) documents; unchanged ones are left as they are."""
    docs = _documents(body)
    size, overlap = chunk_sizes(
        body.chunk_tokens, body.overlap_tokens, default_chunk_tokens, default_overlap_tokens
    )
    plans: list[Plan] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        if len(doc.text) > max_doc_chars:
            raise TooLarge(
                f"document {i} ({doc.source!r}) has {len(doc.text)} characters; the limit is "
                f"{max_doc_chars}",
                param=f"documents.{i}.text" if body.documents is not None else "text",
            )
        collection = doc.collection or body.collection
        did = doc_id(collection, doc.source)
        if did in seen:
            raise Invalid(f"source {doc.source!r} is sent twice", param=f"documents.{i}.source")
        seen.add(did)
        doc_type, language = detect(doc.source, doc.type)
        plans.append(
            Plan(
                doc,
                collection,
                did,
                content_hash(doc.text),
                doc_type,
                language,
                f"{doc_type}:{size}:{overlap}",
                {},
            )
        )
    async with redis.pipeline(transaction=False) as pipe:
        for plan in plans:
            pipe.hgetall(keys.doc(tenant, plan.id))
        olds = await pipe.execute()
    for plan, old in zip(plans, olds, strict=True):
        plan.old = as_dict(old) if old else {}
    todo = [p for p in plans if not _unchanged(p)]
    if todo:
        tokenizer = await asyncio.to_thread(served_tokenizer)
        limit = await asyncio.to_thread(embedder_limit)

        def work() -> None:
            made = 0
            for p in todo:
                p.context = summary(p.doc.text, p.doc_type, p.language)
                p.chunks = chunk_text(
                    p.doc.text, counter=tokenizer, size=size, overlap=overlap,
                    doc_type=p.doc_type, language=p.language, embed_limit=limit,
                )  # fmt: skip
                if len(p.chunks) > max_chunks:
                    # each chunk is a record, a vector, an index entry and a change-stream
                    # entry written in one script: a few hundred thousand would hold Redis
                    raise TooLarge(
                        f"document {p.doc.source!r} makes {len(p.chunks)} chunks of "
                        f"{size} tokens; the limit is {max_chunks} a document: send it with a "
                        "larger chunk_tokens, or in parts",
                        param="chunk_tokens",
                    )
                made += len(p.chunks)
                if made > max_chunks:
                    # the cap holds for a request too: 256 documents just under it each made
                    # millions of chunks (a line per chunk whatever the size: ``f(`` in C)
                    raise TooLarge(
                        f"these documents make more than {max_chunks} chunks together; the "
                        f"limit is {max_chunks} a request: send fewer documents at a time",
                        param="documents",
                    )
                p.chunk_ids = _chunk_ids(p.id, p.doc.source, p.chunks, p.context)
                p.links = find_links(p.doc.source, p.doc.text, p.doc_type, p.language)

        await asyncio.to_thread(work)
    # room for every new document is checked before any is written, so a batch past the quota
    # is refused whole rather than half written; each document still reserves its own place
    # under its write lock, which a concurrent writer can only make fail, never overshoot
    fresh = [p for p in todo if not p.old]
    if fresh:
        await reserve_items(
            redis,
            tenant=tenant,
            kind="docs",
            index_key=keys.docs_index(tenant),
            member=None,
            adding=len(fresh),
            check_only=True,
        )
    results: list[DocResult] = []
    total_chunks = 0
    for plan in plans:
        if plan.chunks is None:
            n = len(load_json(plan.old.get("chunk_ids"), []))
            results.append(
                DocResult(
                    id=plan.id,
                    collection=plan.collection,
                    source=plan.doc.source,
                    status="unchanged",
                    chunks=n,
                    tokens=int(plan.old.get("tokens") or 0),
                    embedded_later=0,
                )
            )
            total_chunks += n
            continue
        results.append(await _write(redis, search, tenant, plan))
        total_chunks += results[-1].chunks
    return DocsWritten(
        data=results, chunks=total_chunks, pending_vectors=search.pending_vectors(tenant)
    )


def _unchanged(plan: Plan) -> bool:
    old = plan.old
    return bool(
        old
        and old.get("hash") == plan.hash
        and old.get("chunking") == plan.chunking
        and load_json(old.get("metadata"), {}) == plan.doc.metadata
    )


# KEYS: the document's record, then every key the commands touch; ARGV[1]: its chunk_ids as
# read under the write lock ('' when it had none), then the packed commands. They run only if
# the record still holds those chunks: a writer whose lock lapsed (a stall or a failover past the
# lock's 30 s, its EXEC resent) must not commit over a newer write, whose chunks it would leave
# behind, searchable and listed by no document.
_IF_CHUNKS = (
    """
local held = redis.call('HGET', KEYS[1], 'chunk_ids') or ''
if held ~= ARGV[1] then return 0 end
local at = 3
"""
    + RUN_PACKED
    + "return 1\n"
)


async def _commit_if_unchanged(
    redis: Any, dkey: str, chunk_ids: str, commands: list[tuple[Any, ...]], what: str
) -> None:
    """Run ``commands`` as one script, only while the record still holds ``chunk_ids``."""
    touched, packed = pack_commands(commands)
    script_keys = list(dict.fromkeys([dkey, *touched]))
    result = await redis.transaction(
        ("EVAL", _IF_CHUNKS, len(script_keys), *script_keys, chunk_ids, *packed), durable=True
    )
    if int(result[0]) != 1:
        raise Conflict(
            f"document {what!r} changed while this request wrote it; retry it",
            code="write_in_progress",
        )


async def _write(redis: Any, search: SearchIndex, tenant: str, plan: Plan) -> DocResult:
    # one writer of a document at a time, reading the chunks stored now (not those read before
    # chunking): two concurrent writes of a source otherwise both drop the first version's
    # chunks and the chunks of the one that loses are left behind
    async with write_lock(redis, tenant, "doc", plan.id):
        plan.old = as_dict(await redis.hgetall(keys.doc(tenant, plan.id))) or {}
        return await _write_locked(redis, search, tenant, plan)


async def _write_locked(redis: Any, search: SearchIndex, tenant: str, plan: Plan) -> DocResult:
    assert plan.chunks is not None and plan.chunk_ids is not None
    reserved = await reserve_items(
        redis, tenant=tenant, kind="docs", index_key=keys.docs_index(tenant), member=plan.id
    )
    now = f"{time.time():.6f}"
    old_ids = [str(x) for x in load_json(plan.old.get("chunk_ids"), [])]
    new_ids = plan.chunk_ids
    new_set = set(new_ids)
    removed = [c for c in old_ids if c not in new_set]
    kept = set(old_ids) & new_set
    tokens = sum(c.tokens for c in plan.chunks)
    record = {
        "collection": plan.collection,
        "source": plan.doc.source,
        "hash": plan.hash,
        "type": plan.doc_type,
        "chunking": plan.chunking,
        "metadata": json.dumps(plan.doc.metadata),
        "chunk_ids": json.dumps(new_ids),
        "links": json.dumps(plan.links or []),
        "tokens": str(tokens),
        "updated_at": now,
    }
    dkey = keys.doc(tenant, plan.id)
    commands: list[tuple[Any, ...]] = [
        ("DEL", dkey),
        ("HSET", dkey, *[x for kv in record.items() for x in kv]),
        ("HSET", dkey, "created_at", plan.old.get("created_at") or now),
        ("ZADD", keys.docs_index(tenant), 0, plan.id),
        ("ZADD", keys.doc_collection(tenant, plan.collection), 0, plan.doc.source),
        *reserved,
    ]
    items: list[Item] = []
    for cid, chunk in zip(new_ids, plan.chunks, strict=True):
        ref = DocRef(plan.id, plan.collection, plan.doc.source, chunk.start_line, chunk.end_line,
                     chunk.heading, plan.context)  # fmt: skip
        fields = {
            "doc_id": plan.id, "collection": plan.collection, "source": plan.doc.source,
            "start_line": str(chunk.start_line), "end_line": str(chunk.end_line),
            "heading": chunk.heading, "text": chunk.text, "updated_at": now,
            "context": plan.context,
        }  # fmt: skip
        ckey = keys.doc_chunk(tenant, cid)
        commands.append(("HSET", ckey, *[x for kv in fields.items() for x in kv]))
        commands.append(("ZADD", keys.doc_chunks_index(tenant), 0, cid))
        commands.append(change_command(tenant, "upsert", "doc", cid, now, cid in kept))
        items.append(Item(kind="doc", id=cid, text=chunk.text, version=now, doc=ref))
    spaces = await vector_models(redis, tenant, search.embedder.model_id) if removed else []
    commands.extend(drop_vectors(tenant, "doc", removed, spaces))
    for cid in removed:
        commands.append(("DEL", keys.doc_chunk(tenant, cid)))
        commands.append(("ZREM", keys.doc_chunks_index(tenant), cid))
        commands.append(change_command(tenant, "delete", "doc", cid, now, False))
    try:
        await _commit_if_unchanged(redis, dkey, plan.old.get("chunk_ids", ""), commands, plan.id)
    except Conflict:
        if reserved:  # the quota place it held is free again at once (else in 30 s)
            with contextlib.suppress(Exception):
                await redis.transaction(*reserved)
        raise
    if removed:
        await drop_late_vectors(redis, tenant, "doc", removed, spaces)
    index = (await search.tenant(tenant))["doc"]
    fresh: list[Item] = []
    for item in items:
        held = index.items.get(item.id)
        if item.id in kept and held is not None:
            held.doc, held.version = item.doc, item.version  # same text and vector, new lines
        else:
            fresh.append(item)
    for cid in removed:
        index.remove(cid)
    await search.apply_local_many(tenant, "doc", fresh)
    return DocResult(
        id=plan.id,
        collection=plan.collection,
        source=plan.doc.source,
        status="updated" if plan.old else "created",
        chunks=len(new_ids),
        tokens=tokens,
        embedded_later=len(fresh),
    )


async def get_document(*, redis: Any, tenant: str, did: str) -> DocDetail:
    record = await redis.hgetall(keys.doc(tenant, did))
    if not record:
        raise NotFound(f"no document {did!r}")
    public = _public(did, record)
    ids = [str(x) for x in load_json(record.get("chunk_ids"), [])]
    async with redis.pipeline(transaction=False) as pipe:
        for cid in ids:
            pipe.hgetall(keys.doc_chunk(tenant, cid))
        chunks = await pipe.execute()
    parts = []
    for cid, raw in zip(ids, chunks, strict=True):
        c = as_dict(raw) if raw else {}
        if c:
            lines = (int(c.get("start_line") or 0), int(c.get("end_line") or 0))
            parts.append(
                ChunkPublic(
                    id=cid, text=c.get("text", ""), lines=lines, heading=c.get("heading", "")
                )
            )
    return DocDetail(**public.model_dump(), parts=parts)


async def delete_document(*, redis: Any, search: SearchIndex, tenant: str, did: str) -> None:
    async with write_lock(redis, tenant, "doc", did):
        await _delete_locked(redis, search, tenant, did)


async def _delete_locked(redis: Any, search: SearchIndex, tenant: str, did: str) -> None:
    record = await redis.hgetall(keys.doc(tenant, did))
    if not record:
        raise NotFound(f"no document {did!r}")
    ids = [str(x) for x in load_json(record.get("chunk_ids"), [])]
    now = f"{time.time():.6f}"
    commands: list[tuple[Any, ...]] = [
        ("DEL", keys.doc(tenant, did)),
        ("ZREM", keys.docs_index(tenant), did),
        (
            "ZREM",
            keys.doc_collection(tenant, record.get("collection", "")),
            record.get("source", ""),
        ),
    ]
    spaces = await vector_models(redis, tenant, search.embedder.model_id)
    commands.extend(drop_vectors(tenant, "doc", ids, spaces))
    for cid in ids:
        commands.append(("DEL", keys.doc_chunk(tenant, cid)))
        commands.append(("ZREM", keys.doc_chunks_index(tenant), cid))
        commands.append(change_command(tenant, "delete", "doc", cid, now, False))
    await _commit_if_unchanged(
        redis, keys.doc(tenant, did), record.get("chunk_ids", ""), commands, did
    )
    await drop_late_vectors(redis, tenant, "doc", ids, spaces)
    index = (await search.tenant(tenant))["doc"]
    for cid in ids:
        index.remove(cid)


async def list_documents(
    *, redis: Any, tenant: str, collection: str | None, limit: int, cursor: str | None
) -> DocsPublic:
    """A page of documents: by source within a collection, else by id across all of them."""
    if collection is not None:
        index = keys.doc_collection(tenant, collection)
        names = await redis.zrangebylex(index, f"({cursor}" if cursor else "-", "+", start=0,
                                        num=limit + 1)  # fmt: skip
        more = len(names) > limit
        names = names[:limit]
        ids = [doc_id(collection, n) for n in names]
    else:
        index = keys.docs_index(tenant)
        ids = await redis.zrangebylex(index, f"({cursor}" if cursor else "-", "+", start=0,
                                      num=limit + 1)  # fmt: skip
        more = len(ids) > limit
        ids = ids[:limit]
        names = ids
    async with redis.pipeline(transaction=False) as pipe:
        for did in ids:
            pipe.hgetall(keys.doc(tenant, did))
        records = await pipe.execute()
    data = [_public(d, as_dict(r)) for d, r in zip(ids, records, strict=True) if r]
    total = await redis.zcard(index)
    return DocsPublic(data=data, count=int(total), next_cursor=names[-1] if more else None)


def score_docs(
    index: Any,
    vec: np.ndarray | None,
    query: str,
    *,
    k: int,
    cfg: GateConfig,
    where: Callable[[Item], bool] | None = None,
) -> list[Scored]:
    """Ranked chunk candidates with the gate's verdicts (the same fusion as facts and memories);
    searches and the chats' injected passages both rank documents here."""
    docs = index["doc"]
    hits = docs.search(vec, query, k=max(k, CANDIDATES), where=where)
    ranked = rank(hits, dense_mode=vec is not None, cfg=cfg, query=query)
    return by_document(ranked, docs.doc_vector, vec, cfg.doc_weight)


def _hit(item: Item, score: float, via: str | None = None) -> DocHit:
    ref = item.doc
    assert ref is not None
    return DocHit(
        id=item.id,
        doc_id=ref.doc_id,
        collection=ref.collection,
        source=ref.source,
        lines=(ref.start_line, ref.end_line),
        heading=ref.heading,
        text=item.text,
        score=round(score, 4),
        cite=cite(ref.source, ref.start_line, ref.end_line),
        via=via,
    )


async def search_documents(
    *, redis: Any, search: SearchIndex, tenant: str, body: DocsSearch, vec: np.ndarray | None,
    cfg: GateConfig,
) -> DocHits:  # fmt: skip
    index = await search.tenant(tenant)
    where = doc_filter({body.collection} if body.collection else None, None, body.path_prefix)
    # folded chunks leave room, so a collapsed search looks at more candidates to fill top_k
    k = body.top_k * FOLD_SPARE if body.collapse else body.top_k
    ranked = score_docs(index, vec, body.query, k=k, cfg=cfg, where=where)
    shown = [s for s in ranked if s.score >= body.min_score]
    if body.collapse:  # one hit per section, among the hits min_score keeps
        shown = [s for s in fold_sections(shown, among=lambda s: True) if not s.folded]
    shown = definitions_first(shown, among=lambda s: True, margin=cfg.margin)
    data = [_hit(s.hit.item, s.score) for s in shown[: body.top_k]]
    neighbours: list[DocHit] = []
    if body.expand and data:
        neighbours = await _neighbours(redis, tenant, index, data, ranked)
    return DocHits(
        data=data, neighbours=neighbours, method="hybrid" if vec is not None else "lexical"
    )


MAX_NEIGHBOURS = 20


async def _neighbours(
    redis: Any, tenant: str, index: Any, hits: list[DocHit], ranked: list[Scored]
) -> list[DocHit]:
    """For each hit, the documents its document links to (one chunk each: the best ranked
    one of that document, else its first)."""
    doc_ids = list(dict.fromkeys(h.doc_id for h in hits))
    async with redis.pipeline(transaction=False) as pipe:
        for did in doc_ids:
            pipe.hget(keys.doc(tenant, did), "links")
        raw_links = await pipe.execute()
    by_source: dict[str, list[Item]] = {}
    for item in index["doc"].items.values():
        if item.doc is not None:
            by_source.setdefault(item.doc.source, []).append(item)
    # targets are looked up by path tail: a scan of every source for every link of every hit
    # took minutes of the event loop at top_k 100 and 2,000 sources
    suffixes = SourceIndex(by_source)
    best = {s.hit.item.id: s.score for s in ranked}
    shown = {h.doc_id for h in hits}
    out: list[DocHit] = []
    for did, raw in zip(doc_ids, raw_links, strict=True):
        via = next(h.id for h in hits if h.doc_id == did)
        collection = next(h.collection for h in hits if h.doc_id == did)
        for target in load_json(raw, []):
            matched = (s for path in target_paths(str(target)) for s in suffixes.get(path, ()))
            for source in dict.fromkeys(matched):
                items = by_source[source]
                same = [i for i in items if i.doc is not None and i.doc.collection == collection]
                if not same or same[0].doc is None or same[0].doc.doc_id in shown:
                    continue
                shown.add(same[0].doc.doc_id)
                pick = max(
                    same, key=lambda i: (best.get(i.id, -9.0), -(i.doc.start_line if i.doc else 0))
                )
                out.append(_hit(pick, best.get(pick.id, 0.0), via=via))
                if len(out) >= MAX_NEIGHBOURS:
                    return out
    return out
