"""The reference library API: documents, chunks in the search index, tenancy, validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.gateway import RunningGateway

GUIDE = """# Deploy guide

Intro line.

## Rolling back

To roll back a release run `hivemind models pin` with the previous version.
The serving pointer moves at once.

## Backups

Backups are taken nightly with `hivemind backup` into the data directory.
"""

CODE = '''"""Helpers."""

import os


def rotate_secrets(path):
    """Replace the secrets file with fresh random values."""
    return os.urandom(32)


class Ledger:
    def balance(self):
        return 0
'''


def _post(c, **body):  # type: ignore[no-untyped-def]
    r = c.post("/v1/docs", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_document_is_chunked_searchable_and_cites_its_lines(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        out = _post(c, source="docs/deploy.md", text=GUIDE, collection="ops")
        doc = out["data"][0]
        assert doc["status"] == "created" and doc["chunks"] >= 2 and doc["collection"] == "ops"
        hits = c.post("/v1/docs/search", json={"query": "how do I roll back a release"}).json()
        top = hits["data"][0]
        assert top["source"] == "docs/deploy.md"
        assert top["heading"] == "Deploy guide > Rolling back"
        assert top["lines"] == [5, 8] and top["cite"] == "docs/deploy.md:5-8"
        detail = c.get(f"/v1/docs/{doc['id']}").json()
        assert detail["hash"] and detail["type"] == "markdown"
        assert [p["heading"] for p in detail["parts"]][-1] == "Deploy guide > Backups"
        page = c.get("/v1/docs", params={"collection": "ops"}).json()
        assert page["count"] == 1 and page["data"][0]["source"] == "docs/deploy.md"
        assert c.delete(f"/v1/docs/{doc['id']}").status_code == 204
        assert c.get(f"/v1/docs/{doc['id']}").status_code == 404
        gone = c.post("/v1/docs/search", json={"query": "roll back a release"}).json()
        assert gone["data"] == []


def test_code_is_chunked_by_definition(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        _post(c, source="lib/secrets.py", text=CODE)
        hits = c.post("/v1/docs/search", json={"query": "rotate_secrets random values"}).json()
        top = hits["data"][0]
        assert top["heading"] == "def rotate_secrets" and top["lines"] == [6, 8]
        hits = c.post("/v1/docs/search", json={"query": "Ledger balance"}).json()
        assert hits["data"][0]["heading"] == "class Ledger"


CACHE_CODE = '''"""The response cache: which chat requests may be answered from the cache.

Answers are kept for an hour.
"""

import hashlib


def is_deterministic(body):
    """Whether a chat request may be answered from stored answers in the cache."""
    if (body.get("n") or 1) != 1:
        return False
    return body.get("temperature") == 0 or body.get("seed") is not None


def cache_key(body):
    """SHA-256 over the request's fields."""
    return hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()
'''

SETTINGS_CODE = '''"""Cache settings: how long an answer stays in the response cache."""

TTL_S = 3600
MAX_ENTRIES = 10_000
'''


def test_a_files_best_definition_is_shown_before_its_module_docstring(
    gateway: RunningGateway,
) -> None:
    with gateway.client() as c:
        _post(c, source="gw/respcache.py", text=CACHE_CODE, collection="code")
        _post(c, source="gw/cache_settings.py", text=SETTINGS_CODE, collection="code")
        body = {"query": "which chat requests may be answered from the cache", "top_k": 5}
        hits = c.post("/v1/docs/search", json={**body, "collection": "code"}).json()["data"]
        ours = [h["heading"] for h in hits if h["source"] == "gw/respcache.py"]
        # the docstring restates the question and would rank first; the file's best
        # definition takes its place and the docstring follows it, while a definition that
        # barely matches (cache_key: "request's") stays below
        assert ours[:2] == ["def is_deterministic", "module"], hits
        assert [h["heading"] for h in hits[:2]] == ours[:2]
        assert "def cache_key" not in ours[:2]
        # a file with no definition keeps its module chunk
        alone = c.post(
            "/v1/docs/search",
            json={"query": "how long does an answer stay in the response cache", "top_k": 1,
                  "path_prefix": "gw/cache_settings"},
        ).json()["data"]  # fmt: skip
        assert alone[0]["heading"] == "module" and alone[0]["source"] == "gw/cache_settings.py"


def test_an_unchanged_document_is_not_touched_and_a_changed_one_keeps_unchanged_chunks(
    gateway: RunningGateway,
) -> None:
    with gateway.client() as c:
        first = _post(c, source="docs/deploy.md", text=GUIDE)["data"][0]
        again = _post(c, source="docs/deploy.md", text=GUIDE)["data"][0]
        assert again["status"] == "unchanged" and again["embedded_later"] == 0
        assert again["id"] == first["id"]
        edited = GUIDE.replace("nightly", "hourly")
        changed = _post(c, source="docs/deploy.md", text=edited)["data"][0]
        assert changed["status"] == "updated"
        assert changed["embedded_later"] == 1  # only the Backups section is new text
        detail = c.get(f"/v1/docs/{first['id']}").json()
        assert "hourly" in detail["parts"][-1]["text"]
        hits = c.post("/v1/docs/search", json={"query": "nightly backups"}).json()
        assert all("nightly" not in h["text"] for h in hits["data"])


def test_a_batch_filters_by_collection_and_path_prefix(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        out = _post(
            c,
            collection="a",
            documents=[
                {"source": "docs/deploy.md", "text": GUIDE},
                {"source": "src/secrets.py", "text": CODE},
                {"source": "notes.txt", "text": "Backups are verified weekly.", "collection": "b"},
            ],
        )
        assert [d["collection"] for d in out["data"]] == ["a", "a", "b"]
        q = {"query": "backups"}
        only_b = c.post("/v1/docs/search", json=q | {"collection": "b"}).json()["data"]
        assert {h["source"] for h in only_b} == {"notes.txt"}
        under = c.post("/v1/docs/search", json=q | {"path_prefix": "docs/"}).json()["data"]
        assert under and {h["source"] for h in under} == {"docs/deploy.md"}
        assert c.get("/v1/docs").json()["count"] == 3


LONG_SECTION = (
    "# Runbook\n\n## Rolling back\n\n"
    + "\n\n".join(
        f"Step {i}: to roll back a release, pin the previous version and wait for the swap."
        for i in range(8)
    )
    + "\n\n## Backups\n\nA release is rolled back from a backup only when pinning fails.\n"
)


def test_a_section_cut_into_chunks_is_one_hit_unless_asked_otherwise(
    gateway: RunningGateway,
) -> None:
    with gateway.client() as c:
        _post(c, source="docs/runbook.md", text=LONG_SECTION, chunk_tokens=32, overlap_tokens=8)
        body = {"query": "roll back a release", "top_k": 5}
        every = c.post("/v1/docs/search", json=body | {"collapse": False}).json()["data"]
        rolling = [h for h in every if h["heading"] == "Runbook > Rolling back"]
        assert len(rolling) >= 3  # the fragments of one section, each a match
        hits = c.post("/v1/docs/search", json=body).json()["data"]
        headings = [h["heading"] for h in hits]
        assert sorted(set(headings)) == sorted(headings)  # each section once
        assert headings[0] == "Runbook > Rolling back" and hits[0]["id"] == every[0]["id"]
        assert "Runbook > Backups" in headings  # the room the fragments took
        bad = c.post("/v1/docs/search", json=body | {"collapse": "no"})
        assert bad.status_code == 422


def test_expand_brings_the_pages_a_hit_links_to(gateway: RunningGateway) -> None:
    index = "# Runbook\n\nBefore an upgrade read [the deploy guide](deploy.md#rolling-back).\n"
    with gateway.client() as c:
        _post(c, documents=[
            {"source": "docs/runbook.md", "text": index},
            {"source": "docs/deploy.md", "text": GUIDE},
        ])  # fmt: skip
        detail = c.get("/v1/docs").json()["data"]
        runbook = next(d for d in detail if d["source"] == "docs/runbook.md")
        assert runbook["links"] == ["docs/deploy.md"]
        body = {"query": "before an upgrade", "top_k": 1, "expand": 1}
        found = c.post("/v1/docs/search", json=body).json()
        assert found["data"][0]["source"] == "docs/runbook.md"
        assert [n["source"] for n in found["neighbours"]] == ["docs/deploy.md"]
        assert found["neighbours"][0]["via"] == found["data"][0]["id"]
        plain = c.post("/v1/docs/search", json=body | {"expand": 0}).json()
        assert plain["neighbours"] == []


def test_tenants_never_see_each_others_documents(gateway: RunningGateway) -> None:
    with gateway.client("acme") as a, gateway.client("globex") as b:
        doc = _post(a, source="docs/deploy.md", text=GUIDE)["data"][0]
        assert b.get(f"/v1/docs/{doc['id']}").status_code == 404
        assert b.delete(f"/v1/docs/{doc['id']}").status_code == 404
        assert b.get("/v1/docs").json()["count"] == 0
        assert b.post("/v1/docs/search", json={"query": "roll back release"}).json()["data"] == []
        # the same source in another tenant is another document
        other = _post(b, source="docs/deploy.md", text="# Other\n\nnothing here\n")["data"][0]
        assert other["status"] == "created"
        assert a.get(f"/v1/docs/{doc['id']}").json()["source"] == "docs/deploy.md"


def test_bad_documents_are_refused_with_a_problem(gateway: RunningGateway) -> None:
    with gateway.client() as c, gateway.client(role="read") as r:
        cases = [
            {"text": "x"},  # no source
            {"source": "a.md"},  # no text
            {"source": "a.md", "text": "x", "documents": [{"source": "b", "text": "y"}]},
            {"source": "a.md", "text": "x", "chunk_tokens": 64, "overlap_tokens": 64},
            {"source": "a.md", "text": "x", "chunk_tokens": 8},
            {"source": "a.md", "text": "x", "chunk_tokens": 10**9},
            {"source": "a.md", "text": "x", "overlap_tokens": -1},
            {"source": "a.md", "text": "bad\x00text"},
            {"source": " leading-space", "text": "x"},
            {"source": "two\nlines.md", "text": "x"},
            {"source": "a.md", "text": "x", "collection": "no spaces"},
            {"documents": []},
            {"documents": [{"source": "a", "text": "x"}, {"source": "a", "text": "y"}]},
            # metadata is stored with the document and sent back with every listing
            {"source": "a.md", "text": "x", "metadata": {"blob": "x" * 20_000}},
            {"documents": [{"source": "a.md", "text": "x", "metadata": {"l": [0] * 9_000}}]},
        ]
        for body in cases:
            resp = c.post("/v1/docs", json=body)
            assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
        assert r.post("/v1/docs", json={"source": "a.md", "text": "x"}).status_code == 403
        assert c.get("/v1/docs/not-an-id").status_code in (400, 404, 422)
        assert c.post("/v1/docs/search", json={"query": "x", "expand": 2}).status_code in (400, 422)
        assert c.get("/v1/docs").json()["count"] == 0


def test_the_docs_quota_refuses_a_new_document_but_not_an_update(
    gateway: RunningGateway, redis_url: str
) -> None:
    from hivemind_common import keys
    from hivemind_common.redis import connect_redis

    async def limit() -> None:
        redis = connect_redis(redis_url)
        try:
            await redis.hset(keys.tenant_settings("acme"), "max_docs", "1")
        finally:
            await redis.aclose()

    asyncio.run(limit())
    with gateway.client() as c:
        _post(c, source="one.md", text="# One\n\nfirst\n")
        resp = c.post("/v1/docs", json={"source": "two.md", "text": "# Two\n\nsecond\n"})
        assert resp.status_code == 403 and resp.json()["code"] == "quota_exceeded"
        assert (
            _post(c, source="one.md", text="# One\n\nchanged\n")["data"][0]["status"] == "updated"
        )


def test_tokenize_and_chunk_use_the_served_tokenizer(gateway: RunningGateway) -> None:
    with gateway.client(role="read") as c:
        r = c.post("/v1/tokenize", json={"text": "Hello world", "ids": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == len(body["ids"]) == 2 and body["model"]
        assert "ids" not in c.post("/v1/tokenize", json={"text": "Hello"}).json()
        # "auto", as the chat routes take it: the model a chat of this text goes to (here the
        # served default); it was sent to inference as a model named "auto", a 404
        auto = c.post("/v1/tokenize", json={"text": "Hello world", "model": "auto", "ids": True})
        assert auto.status_code == 200, auto.text
        assert auto.json() == body
        text = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(10))
        r = c.post("/v1/chunk", json={"text": text, "chunk_tokens": 64, "overlap_tokens": 8})
        assert r.status_code == 200, r.text
        chunks = r.json()["data"]
        assert len(chunks) >= 8 and all(ch["tokens"] <= 64 for ch in chunks)
        bad = c.post("/v1/chunk", json={"text": text, "chunk_tokens": 64, "overlap_tokens": 64})
        assert bad.status_code == 400 and "overlap_tokens" in bad.json()["detail"]


def test_concurrent_rewrites_of_one_document_leave_no_orphan_chunks(
    gateway: RunningGateway, redis_url: str
) -> None:
    """Versions of one source written at the same moment: the document ends as one of them and
    holds every chunk stored for it (each writer used to drop only the chunks it had read, so
    the chunks of a concurrent version stayed behind, found by search with no document)."""
    import httpx

    from hivemind_common import keys
    from hivemind_common.redis import connect_redis

    versions = [
        "\n\n".join(f"## Part {p} of version {v}\n\nversion {v} says step {p}." for p in range(6))
        for v in range(6)
    ]
    headers = {"Authorization": f"Bearer {gateway.key()}"}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as c:
            body = {"chunk_tokens": 32, "overlap_tokens": 0}
            return list(
                await asyncio.gather(
                    *(c.post("/v1/docs", json={**body, "source": "race.md", "text": t})
                      for t in versions)
                )
            )  # fmt: skip

    async def stored_chunks() -> set[str]:
        redis = connect_redis(redis_url)
        try:
            return {str(m) for m in await redis.zrange(keys.doc_chunks_index("acme"), 0, -1)}
        finally:
            await redis.aclose()

    for _ in range(3):
        answers = asyncio.run(race())
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        with gateway.client() as c:
            listed = c.get("/v1/docs").json()["data"]
            assert len(listed) == 1
            doc = c.get(f"/v1/docs/{listed[0]['id']}").json()
            held = asyncio.run(stored_chunks())
            assert len(held) == doc["chunks"], (len(held), doc["chunks"])


def test_a_writer_whose_lock_lapsed_cannot_commit_over_a_newer_version(
    gateway: RunningGateway, redis_url: str
) -> None:
    """The write lock can lapse (a stall or a failover past its 30 s): writers then read the
    same chunks and both commit, and the chunks of the version that lost stayed stored and
    searchable with no document listing them. Here the lock is stolen as fast as writers take
    it; each write commits only over the chunks it read, so a loser gets a 409 and nothing is
    left behind."""
    import httpx

    from hivemind_common import keys
    from hivemind_common.redis import connect_redis
    from hivemind_gateway.docs.service import doc_id

    versions = [
        "\n\n".join(f"## Part {p} of version {v}\n\nversion {v} says step {p}." for p in range(6))
        for v in range(8)
    ]
    headers = {"Authorization": f"Bearer {gateway.key()}"}
    claim = keys.write_claim("acme", "doc", doc_id("default", "lapse.md"))

    async def race() -> tuple[list[httpx.Response], set[str]]:
        redis = connect_redis(redis_url)
        done = asyncio.Event()

        async def steal() -> None:
            while not done.is_set():
                await redis.delete(claim)
                await asyncio.sleep(0.001)

        thief = asyncio.create_task(steal())
        try:
            async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as c:
                body = {"chunk_tokens": 32, "overlap_tokens": 0, "source": "lapse.md"}
                answers = list(
                    await asyncio.gather(
                        *(c.post("/v1/docs", json={**body, "text": t}) for t in versions)
                    )
                )
            done.set()
            await thief
            held = {str(m) for m in await redis.zrange(keys.doc_chunks_index("acme"), 0, -1)}
            return answers, held
        finally:
            done.set()
            await redis.aclose()

    for _ in range(3):
        answers, held = asyncio.run(race())
        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
        assert any(a.status_code == 200 for a in answers)
        for refused in (a for a in answers if a.status_code == 409):
            assert refused.json()["code"] == "write_in_progress"
        with gateway.client() as c:
            listed = c.get("/v1/docs").json()["data"]
            assert len(listed) == 1
            doc = c.get(f"/v1/docs/{listed[0]['id']}").json()
            assert held == {p["id"] for p in doc["parts"]}, (len(held), doc["chunks"])


def test_a_batch_past_the_docs_quota_is_refused_whole(
    gateway: RunningGateway, redis_url: str
) -> None:
    from hivemind_common import keys
    from hivemind_common.redis import connect_redis

    async def limit() -> None:
        redis = connect_redis(redis_url)
        try:
            await redis.hset(keys.tenant_settings("acme"), "max_docs", "2")
        finally:
            await redis.aclose()

    asyncio.run(limit())
    docs = [{"source": f"d{n}.md", "text": f"# D{n}\n\nbody {n}\n"} for n in range(3)]
    with gateway.client() as c:
        resp = c.post("/v1/docs", json={"documents": docs})
        assert resp.status_code == 403 and resp.json()["code"] == "quota_exceeded"
        assert c.get("/v1/docs").json()["count"] == 0  # none of them half-written
        assert c.post("/v1/docs", json={"documents": docs[:2]}).status_code == 200
        # an update beside a new one: the update needs no room, the new one has none
        changed = [{**docs[0], "text": "# D0\n\nchanged\n"}, docs[2]]
        assert c.post("/v1/docs", json={"documents": changed}).status_code == 403
        assert c.post("/v1/docs", json={"documents": changed[:1]}).status_code == 200
        assert c.get("/v1/docs").json()["count"] == 2


def test_chunk_and_rag_context_defaults_follow_the_settings(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """/v1/chunk cut at 256/32 and /v1/rag/context budgeted 512 tokens whatever the settings
    said, so /v1/chunk no longer cut as the library would once they changed."""
    from support.gateway import running_gateway

    with running_gateway(redis_url, internal_token, data_dir, docs_chunk_tokens=48,
                         docs_overlap_tokens=0, rag_budget_tokens=77) as gw:  # fmt: skip
        text = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(8))
        with gw.client() as c:
            chunked = c.post("/v1/chunk", json={"text": text}).json()["data"]
            assert chunked and all(ch["tokens"] <= 48 for ch in chunked)
            stored = c.post("/v1/docs", json={"source": "p.txt", "text": text}).json()
            assert stored["data"][0]["chunks"] == len(chunked)
            explained = c.post("/v1/rag/context", json={"query": "word", "explain": True}).json()
            assert explained["explain"]["budget_tokens"] == 77


def test_a_small_chunk_size_alone_keeps_the_overlap_share_and_chunks_are_capped(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """``chunk_tokens`` 24 without an overlap was refused for the default overlap (32), a field
    the caller never sent; a document past ``docs_max_chunks`` is refused whole (a quarter of a
    million chunks was one Redis script and a quadratic rewrite)."""
    from support.gateway import running_gateway

    text = "\n\n".join(f"Paragraph {i} says where backup {i} went." for i in range(40))
    gw_cm = running_gateway(redis_url, internal_token, data_dir, docs_max_chunks=30)
    with gw_cm as gw, gw.client() as c:
        small = c.post("/v1/chunk", json={"text": text, "chunk_tokens": 24})
        assert small.status_code == 200, small.text
        assert all(ch["tokens"] <= 24 for ch in small.json()["data"])
        over = c.post("/v1/docs", json={"source": "b.txt", "text": text, "chunk_tokens": 16})
        assert over.status_code == 413, over.text
        assert "limit is 30" in over.json()["detail"] and "chunk_tokens" in over.json()["detail"]
        assert c.get("/v1/docs").json()["count"] == 0
        fits = c.post("/v1/docs", json={"source": "b.txt", "text": text, "chunk_tokens": 256})
        assert fits.status_code == 200 and fits.json()["data"][0]["chunks"] <= 30


def test_a_batchs_type_and_metadata_are_its_documents_defaults(gateway: RunningGateway) -> None:
    """Top-level ``type`` and ``metadata`` beside ``documents`` were dropped without a word
    (the top-level ``collection`` applied): they are the defaults of the batch's documents."""
    with gateway.client() as c:
        out = _post(
            c,
            type="text",
            metadata={"team": "ops"},
            documents=[
                {"source": "a.md", "text": "# Not a heading here\n\nplain words"},
                {"source": "b.md", "text": "# Title\n\nwords", "type": "markdown",
                 "metadata": {"team": "web"}},
                {"source": "c.md", "text": "# Title\n\nwords", "metadata": {}},
            ],
        )  # fmt: skip
        got = {d["source"]: c.get(f"/v1/docs/{d['id']}").json() for d in out["data"]}
        assert got["a.md"]["type"] == "text" and got["a.md"]["metadata"] == {"team": "ops"}
        assert got["b.md"]["type"] == "markdown" and got["b.md"]["metadata"] == {"team": "web"}
        assert got["c.md"]["type"] == "text" and got["c.md"]["metadata"] == {}


def test_a_batch_is_capped_in_chunks_as_a_whole(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """The chunk cap held for each document only: 256 documents just under it made millions of
    chunks in one request (a C file of ``f(`` lines is a chunk a line, whatever the size)."""
    from support.gateway import running_gateway

    code = "".join(f"f{i}(\n" for i in range(20))  # 20 definitions, 20 chunks
    two = [{"source": "a.c", "text": code}, {"source": "b.c", "text": code}]
    gw_cm = running_gateway(redis_url, internal_token, data_dir, docs_max_chunks=30)
    with gw_cm as gw, gw.client() as c:
        over = c.post("/v1/docs", json={"documents": two})
        assert over.status_code == 413, over.text
        assert "30 a request" in over.json()["detail"]
        assert c.get("/v1/docs").json()["count"] == 0  # refused whole
        for doc in two:  # each alone is within the cap
            assert _post(c, **doc)["data"][0]["chunks"] == 20
