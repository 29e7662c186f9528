"""Routes of the reference library (``/v1/docs``) and the tokenizer helpers for clients
(``/v1/tokenize``, ``/v1/chunk``); the tenant always comes from the caller's key."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query

from hivemind_common.auth import ReadPrincipal, WritePrincipal
from hivemind_common.errors import TooLarge
from hivemind_common.ids import NAME_PATTERN
from hivemind_common.models_paths import DEFAULT_LLM_ID
from hivemind_gateway.deps import RedisDep, SettingsDep, StateDep
from hivemind_gateway.docs import service
from hivemind_gateway.docs.chunking import chunk_sizes, chunk_text, detect
from hivemind_gateway.docs.schemas import (
    ChunkBody,
    Chunked,
    ChunkOut,
    DocDetail,
    DocHits,
    DocsCreate,
    DocsPublic,
    DocsSearch,
    DocsWritten,
    TokenizeBody,
    Tokenized,
)
from hivemind_gateway.docs.tokens import embedder_limit, served_tokenizer
from hivemind_gateway.openai.upstream import post_json
from hivemind_gateway.rag.gate import embed_query, gate_config

router = APIRouter(prefix="/v1/docs", tags=["docs"])
tools_router = APIRouter(prefix="/v1", tags=["docs"])

DOC_ID_PATTERN = r"^d[0-9a-f]{31}$"
DocId = Annotated[str, Path(pattern=DOC_ID_PATTERN, description="the document's id")]
LOCAL_MODELS = frozenset({"default", DEFAULT_LLM_ID})


@router.post("", response_model=DocsWritten)
async def put_docs(
    body: DocsCreate, principal: WritePrincipal, state: StateDep, settings: SettingsDep
) -> DocsWritten:
    """Store one document (``source`` + ``text``) or a batch (``documents``); a document whose
    content did not change is left alone (``status: unchanged``)."""
    return await service.put_documents(
        redis=state.redis,
        search=state.search,
        tenant=principal.tenant,
        body=body,
        max_doc_chars=settings.max_doc_chars,
        default_chunk_tokens=settings.docs_chunk_tokens,
        default_overlap_tokens=settings.docs_overlap_tokens,
        max_chunks=settings.docs_max_chunks,
    )


@router.get("", response_model=DocsPublic)
async def list_docs(
    principal: ReadPrincipal,
    redis: RedisDep,
    collection: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=1024)] = None,
) -> DocsPublic:
    """A page of documents (by source within ``collection``, else by id); pass
    ``next_cursor`` back as ``cursor`` for the next."""
    return await service.list_documents(
        redis=redis, tenant=principal.tenant, collection=collection, limit=limit, cursor=cursor
    )


@router.post("/search", response_model=DocHits)
async def search_docs(body: DocsSearch, principal: ReadPrincipal, state: StateDep) -> DocHits:
    """Chunks ranked by fused dense + lexical score, each citing ``source:lines``."""
    vec = await embed_query(state.search, body.query, tenant=principal.tenant)
    return await service.search_documents(
        redis=state.redis,
        search=state.search,
        tenant=principal.tenant,
        body=body,
        vec=vec,
        cfg=gate_config(state),
    )


@router.get("/{doc_id}", response_model=DocDetail)
async def get_doc(doc_id: DocId, principal: ReadPrincipal, redis: RedisDep) -> DocDetail:
    return await service.get_document(redis=redis, tenant=principal.tenant, did=doc_id)


@router.delete("/{doc_id}", status_code=204)
async def delete_doc(doc_id: DocId, principal: WritePrincipal, state: StateDep) -> None:
    await service.delete_document(
        redis=state.redis, search=state.search, tenant=principal.tenant, did=doc_id
    )


@tools_router.post("/tokenize", response_model=Tokenized, response_model_exclude_none=True)
async def tokenize(body: TokenizeBody, principal: ReadPrincipal, state: StateDep) -> Tokenized:
    """Tokens of ``text`` with the served model's tokenizer (another model: asked of inference;
    ``auto``: the model a chat of this text would be routed to)."""
    model = body.model
    if model == "auto":  # what /v1/chat/completions accepts, so a client may count with it
        model = state.served_models.rules.pick(prompt_chars=len(body.text), task=None)
    if model is not None and model not in LOCAL_MODELS:
        data, _ = await post_json(
            state.inference_http,
            "inference",
            "/tokenize",
            {"content": body.text, "model": model},
        )
        ids = [int(t) for t in data.get("tokens", [])]
        count = int(data.get("count", len(ids)))
        return Tokenized(model=str(data.get("model", model)), count=count,
                         ids=ids if body.ids else None)  # fmt: skip
    tokenizer = await asyncio.to_thread(served_tokenizer)
    encoding = await asyncio.to_thread(tokenizer.encode, body.text)
    return Tokenized(
        model=tokenizer.name, count=len(encoding.ids), ids=encoding.ids if body.ids else None
    )


@tools_router.post("/chunk", response_model=Chunked)
async def chunk(body: ChunkBody, principal: ReadPrincipal, settings: SettingsDep) -> Chunked:
    """``text`` cut as the reference library would cut it (sizes in the served model's tokens)."""
    size, overlap = chunk_sizes(
        body.chunk_tokens, body.overlap_tokens, settings.docs_chunk_tokens,
        settings.docs_overlap_tokens,
    )  # fmt: skip
    if len(body.text) > settings.max_doc_chars:
        raise TooLarge(
            f"text has {len(body.text)} characters; the limit is {settings.max_doc_chars}",
            param="text",
        )
    source = body.source or ""
    doc_type, language = detect(source, body.type)
    tokenizer = await asyncio.to_thread(served_tokenizer)
    limit = await asyncio.to_thread(embedder_limit)
    chunks = await asyncio.to_thread(
        chunk_text, body.text, counter=tokenizer, size=size,
        overlap=overlap, doc_type=doc_type, language=language, embed_limit=limit,
    )  # fmt: skip
    return Chunked(
        model=tokenizer.name,
        type=doc_type,
        data=[
            ChunkOut(
                text=c.text, lines=(c.start_line, c.end_line), heading=c.heading, tokens=c.tokens
            )
            for c in chunks
        ],
    )
