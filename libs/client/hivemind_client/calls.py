"""Each API call described once (method, path, body, answer type); the sync and the async
client only run them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from hivemind_client import models as m

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    answer: type[T] | None
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    # safe to send again after a failure that may have reached the server (GET, PUT, and the
    # document upsert, whose ids come from collection + source and which skips unchanged text)
    idempotent: bool = False

    def __post_init__(self) -> None:
        if self.method in ("GET", "PUT"):
            object.__setattr__(self, "idempotent", True)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _key(value: str) -> str:
    return quote(value, safe="/:@+")  # fact keys may hold '/', the route takes the rest


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _page(limit: int, cursor: str | None, **more: Any) -> dict[str, Any]:
    return _clean({"limit": limit, "cursor": cursor, **more})


# --- facts ----------------------------------------------------------------------------------------
def put_fact(key: str, value: str, tags: list[str] | None = None) -> Call[m.Fact]:
    return Call("PUT", f"/v1/facts/{_key(key)}", m.Fact, _clean({"value": value, "tags": tags}))


def get_fact(key: str) -> Call[m.Fact]:
    return Call("GET", f"/v1/facts/{_key(key)}", m.Fact)


def delete_fact(key: str) -> Call[None]:
    return Call("DELETE", f"/v1/facts/{_key(key)}", None)


def list_facts(
    limit: int = 50, cursor: str | None = None, prefix: str | None = None
) -> Call[m.FactPage]:
    return Call("GET", "/v1/facts", m.FactPage, params=_page(limit, cursor, prefix=prefix))


def search_facts(query: str, top_k: int = 5) -> Call[m.FactHits]:
    return Call("POST", "/v1/facts/search", m.FactHits, {"query": query, "top_k": top_k})


# --- sessions and memories ------------------------------------------------------------------------
def create_session(
    session_id: str | None = None, *, context: str | None = None, task: str | None = None,
    files: list[str] | None = None, metadata: dict[str, Any] | None = None,
) -> Call[m.Session]:  # fmt: skip
    body = _clean({"id": session_id, "context": context, "task": task, "files": files,
                   "metadata": metadata})  # fmt: skip
    return Call("POST", "/v1/sessions", m.Session, body)


def get_session(session_id: str) -> Call[m.Session]:
    return Call("GET", f"/v1/sessions/{_seg(session_id)}", m.Session)


def list_sessions(
    limit: int = 50, cursor: str | None = None, preview_chars: int | None = None
) -> Call[m.SessionPage]:
    """A page of sessions; ``preview_chars`` cuts each context to its start."""
    params = _page(limit, cursor, preview_chars=preview_chars)
    return Call("GET", "/v1/sessions", m.SessionPage, params=params)


def add_memory(
    text: str, *, session_id: str | None = None, tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None, memory_id: str | None = None,
) -> Call[m.Memory]:  # fmt: skip
    body = _clean({"text": text, "session_id": session_id, "tags": tags, "metadata": metadata,
                   "id": memory_id})  # fmt: skip
    return Call("POST", "/v1/memories", m.Memory, body)


def get_memory(memory_id: str) -> Call[m.Memory]:
    return Call("GET", f"/v1/memories/{_seg(memory_id)}", m.Memory)


def delete_memory(memory_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/memories/{_seg(memory_id)}", None)


def list_memories(
    limit: int = 50, cursor: str | None = None, session_id: str | None = None
) -> Call[m.MemoryPage]:
    return Call("GET", "/v1/memories", m.MemoryPage,
                params=_page(limit, cursor, session_id=session_id))  # fmt: skip


def search_memories(
    query: str, top_k: int = 5, session_id: str | None = None, tags: list[str] | None = None
) -> Call[m.MemoryHits]:
    body = _clean({"query": query, "top_k": top_k, "session_id": session_id, "tags": tags})
    return Call("POST", "/v1/memories/search", m.MemoryHits, body)


# --- the reference library ------------------------------------------------------------------------
def put_doc(
    source: str, text: str, *, collection: str = "default", type: str | None = None,
    metadata: dict[str, Any] | None = None, chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
) -> Call[m.DocsWritten]:  # fmt: skip
    body = _clean({"source": source, "text": text, "collection": collection, "type": type,
                   "metadata": metadata, "chunk_tokens": chunk_tokens,
                   "overlap_tokens": overlap_tokens})  # fmt: skip
    return Call("POST", "/v1/docs", m.DocsWritten, body, idempotent=True)


def put_docs(
    documents: list[m.DocInput], *, collection: str = "default", chunk_tokens: int | None = None,
    overlap_tokens: int | None = None,
) -> Call[m.DocsWritten]:  # fmt: skip
    body = _clean({
        "collection": collection,
        "documents": [d.model_dump(exclude_none=True) for d in documents],
        "chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens,
    })  # fmt: skip
    return Call("POST", "/v1/docs", m.DocsWritten, body, idempotent=True)


def list_docs(
    collection: str | None = None, limit: int = 50, cursor: str | None = None
) -> Call[m.DocPage]:
    return Call("GET", "/v1/docs", m.DocPage, params=_page(limit, cursor, collection=collection))


def get_doc(doc_id: str) -> Call[m.DocDetail]:
    return Call("GET", f"/v1/docs/{_seg(doc_id)}", m.DocDetail)


def delete_doc(doc_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/docs/{_seg(doc_id)}", None)


def search_docs(
    query: str, top_k: int = 5, *, collection: str | None = None, path_prefix: str | None = None,
    expand: int = 0, collapse: bool = True,
) -> Call[m.DocHits]:  # fmt: skip
    """``collapse=False`` lists every matching chunk, a section's overlapping fragments too."""
    body = _clean({"query": query, "top_k": top_k, "collection": collection,
                   "path_prefix": path_prefix, "expand": expand,
                   "collapse": None if collapse else False})  # fmt: skip
    return Call("POST", "/v1/docs/search", m.DocHits, body)


# --- helpers ------------------------------------------------------------------------------------
def tokenize(text: str, *, model: str | None = None, ids: bool = False) -> Call[m.Tokenized]:
    return Call(
        "POST", "/v1/tokenize", m.Tokenized, _clean({"text": text, "model": model, "ids": ids})
    )


def chunk(
    text: str, *, chunk_tokens: int | None = None, overlap_tokens: int | None = None,
    type: str | None = None, source: str | None = None,
) -> Call[m.Chunked]:  # fmt: skip
    """``text`` cut as the library cuts it (sizes default to the gateway's settings)."""
    body = _clean({"text": text, "chunk_tokens": chunk_tokens, "overlap_tokens": overlap_tokens,
                   "type": type, "source": source})  # fmt: skip
    return Call("POST", "/v1/chunk", m.Chunked, body)


def rag_context(
    query: str, budget_tokens: int | None = None, session_id: str | None = None
) -> Call[m.RagContext]:
    body = _clean({"query": query, "budget_tokens": budget_tokens, "session_id": session_id})
    return Call("POST", "/v1/rag/context", m.RagContext, body)


def rag_stats() -> Call[m.RagStats]:
    return Call("GET", "/v1/rag/stats", m.RagStats)


def parse(call: Call[T], payload: Any) -> T:
    if call.answer is None:
        return None  # type: ignore[return-value]
    answer: Any = call.answer
    if isinstance(answer, type) and issubclass(answer, BaseModel):
        return answer.model_validate(payload)  # type: ignore[return-value]
    return payload  # type: ignore[no-any-return]
