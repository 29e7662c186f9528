"""Fast ingest: the batch route, and vectors added by the index's worker (also after a restart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_sync

from hivemind_common import keys
from hivemind_gateway.memory.schemas import MAX_BATCH_ITEMS
from support.embedding import shared_embedding_url
from support.gateway import RunningGateway, running_gateway
from support.waiting import wait_until

MODEL = "all-MiniLM-L6-v2"


def test_a_batch_stores_the_good_items_and_reports_each_bad_one(gateway: RunningGateway) -> None:
    items = [
        {"text": "deployed the billing service", "session_id": "s1", "tags": ["ops"]},
        {"text": ""},  # empty
        {"text": "rotated the TLS certificates", "session_id": "bad id!"},
        {"text": "ok", "colour": "blue"},  # an unknown field
        "not an object",
        {"text": "x" * 70_000},  # over max_memory_text_chars
        {"text": "moved backups to the new NAS", "metadata": {"speaker": "Ana"}},
    ]
    with gateway.client() as c:
        r = c.post("/v1/memories/batch", json={"memories": items})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["stored"], body["failed"]) == (2, 5)
        results = body["results"]
        assert [i["index"] for i in results] == list(range(len(items)))
        ok = [i for i in results if i["error"] is None]
        assert [i["index"] for i in ok] == [0, 6] and all(i["id"] for i in ok)
        assert results[5]["error"]["status"] == 413 and results[5]["error"]["param"] == "text"
        assert all(results[i]["error"]["status"] == 422 for i in (1, 2, 3, 4))
        assert results[2]["error"]["param"] == "session_id"
        stored = c.get(f"/v1/memories/{ok[0]['id']}").json()
        assert stored["session_id"] == "s1" and stored["tags"] == ["ops"]
        assert c.get("/v1/memories", params={"session_id": "s1"}).json()["count"] == 1
        assert c.get("/v1/memories").json()["count"] == 2


def test_a_store_failure_after_a_chunk_is_reported_item_by_item(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis going away after the first chunk was committed once failed the whole request
    (a 503 with no results), so a retry stored the first chunk's items twice."""
    import redis.exceptions

    from hivemind_gateway.memory import batch

    real = batch._write_chunk
    calls = {"n": 0}

    async def flaky(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] >= 2:
            raise redis.exceptions.ConnectionError("the store went away")
        await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "_write_chunk", flaky)
    items = [{"text": f"note {i}"} for i in range(batch.CHUNK + 30)]
    items[batch.CHUNK + 1] = {"text": ""}  # refused on its own, before any chunk
    with gateway.client() as c:
        r = c.post("/v1/memories/batch", json={"memories": items})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["stored"], body["failed"]) == (batch.CHUNK, 30)
        later = body["results"][batch.CHUNK :]
        assert later[1]["error"]["status"] == 422
        rest = [x for i, x in enumerate(later) if i != 1]
        assert all(x["error"]["status"] == 503 and x["id"] for x in rest)
        assert c.get("/v1/memories").json()["count"] == batch.CHUNK
        calls["n"] = 1  # every chunk fails now: nothing is stored, so the request fails
        whole = c.post("/v1/memories/batch", json={"memories": items[:3]})
        assert whole.status_code == 503 and "results" not in whole.json()


def test_a_batch_over_the_limit_is_refused_whole(gateway: RunningGateway) -> None:
    items = [{"text": f"note {i}"} for i in range(MAX_BATCH_ITEMS + 1)]
    with gateway.client() as c:
        r = c.post("/v1/memories/batch", json={"memories": items})
        assert r.status_code == 422, r.text
        assert c.get("/v1/memories").json()["count"] == 0
        ok = c.post("/v1/memories/batch", json={"memories": items[:MAX_BATCH_ITEMS]})
        assert ok.status_code == 200 and ok.json()["stored"] == MAX_BATCH_ITEMS
        assert c.post("/v1/memories/batch", json={"items": []}).status_code == 422


def test_a_batch_needs_a_write_key(gateway: RunningGateway) -> None:
    with gateway.client(role="read") as c:
        r = c.post("/v1/memories/batch", json={"memories": [{"text": "hello"}]})
        assert r.status_code == 403


def test_stored_memories_are_searchable_by_their_words_before_any_vector(
    gateway: RunningGateway,
) -> None:
    # this gateway's embedding service is unreachable: only the lexical side can answer
    with gateway.client() as c:
        items = [{"text": f"ticket {i}: the {w} job failed"} for i, w in enumerate(["cron", "etl"])]
        c.post("/v1/memories/batch", json={"memories": items}).raise_for_status()
        hits = c.post("/v1/memories/search", json={"query": "etl job"}).json()
        assert hits["method"] == "lexical"
        assert hits["data"][0]["text"] == "ticket 1: the etl job failed"
        assert c.get("/v1/rag/stats").json()["pending_vectors"] == 2


def test_the_worker_fills_missing_vectors_after_a_restart(
    gateway: RunningGateway, internal_token: str, data_dir: Path
) -> None:
    # stored while no embedding service answered: Redis holds the memories without vectors
    with gateway.client() as c:
        items = [{"text": f"meeting notes {i}", "session_id": "weekly"} for i in range(40)]
        body = c.post("/v1/memories/batch", json={"memories": items}).json()
    ids = [i["id"] for i in body["results"]]
    raw = redis_sync.Redis.from_url(gateway.redis_url)
    assert not any(raw.exists(keys.vector("acme", MODEL, "memory", i)) for i in ids)
    # a gateway started now (with the embedding service up) loads them and embeds them
    with running_gateway(
        gateway.redis_url,
        internal_token,
        data_dir,
        embedding_url=shared_embedding_url(internal_token),
    ) as restarted:
        restarted.keys[("acme", "write")] = gateway.key()
        with restarted.client() as c:

            def all_embedded() -> bool:
                return bool(c.get("/v1/rag/stats").json()["pending_vectors"] == 0)

            wait_until(all_embedded, timeout=60, what="every memory embedded")
            hits = c.post("/v1/memories/search", json={"query": "notes from the meeting"})
            assert hits.json()["method"] == "hybrid"
    assert all(raw.exists(keys.vector("acme", MODEL, "memory", i)) for i in ids)


def test_a_vector_embedded_for_an_old_version_is_never_stored(
    gateway: RunningGateway, internal_token: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker once stored a vector whatever happened to its item while it was embedded:
    a memory deleted (or written anew) meanwhile got the old text's vector back in Redis, which
    other gateways and every restart then loaded."""
    from hivemind_gateway.search.embedder import EmbeddingClient

    with gateway.client() as c:
        items = [{"text": f"runbook step {i}"} for i in range(6)]
        ids = [i["id"] for i in c.post("/v1/memories/batch", json={"memories": items}).json()[
            "results"]]  # fmt: skip
    raw = redis_sync.Redis.from_url(gateway.redis_url, decode_responses=True)
    gone, renewed = ids[0], ids[1]
    real = EmbeddingClient.embed
    meddled = {"done": False}

    async def embed(self: EmbeddingClient, texts: list[str], **kw: object) -> object:
        answer = await real(self, texts, **kw)  # type: ignore[arg-type]  # (raises while down)
        if not meddled["done"] and len(texts) > 1:  # the worker's batch: change two items now
            meddled["done"] = True
            raw.delete(keys.memory("acme", gone))
            raw.hset(keys.memory("acme", renewed), "created_at", "1.000000")
        return answer

    monkeypatch.setattr(EmbeddingClient, "embed", embed)
    with running_gateway(gateway.redis_url, internal_token, data_dir,
                         embedding_url=shared_embedding_url(internal_token)):  # fmt: skip
        wait_until(
            lambda: all(raw.exists(keys.vector("acme", MODEL, "memory", i)) for i in ids[2:]),
            timeout=60, what="the untouched memories' vectors",
        )  # fmt: skip
        assert meddled["done"]
        assert not raw.exists(keys.vector("acme", MODEL, "memory", gone))
        assert not raw.exists(keys.vector("acme", MODEL, "memory", renewed))


def test_the_import_command_stores_a_jsonl_file_and_names_refused_lines(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    lines = [json.dumps({"text": f"imported note {i}", "session_id": "imp"}) for i in range(7)]
    lines[3] = "{not json"
    lines[5] = json.dumps({"text": "   "})
    path = tmp_path / "memories.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    monkeypatch.setenv("HIVEMIND_API_KEY", gateway.key())
    args = ["memories", "import", str(path), "--gateway-url", gateway.url, "--batch", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "stored 5 of 7 memories" in result.output
    assert "line 4: not JSON" in result.output and "line 6:" in result.output
    with gateway.client() as c:
        assert c.get("/v1/memories", params={"session_id": "imp"}).json()["count"] == 5


def test_the_import_command_refuses_unsendable_lines_and_stores_nothing_twice(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line that parses but cannot be sent (1e400 is infinity; a lone surrogate) once ended
    the import with every later line unsent; and lines had no ids, so running the import
    again stored everything twice."""
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    lines = [json.dumps({"text": f"runbook line {i}", "session_id": "rb"}) for i in range(6)]
    lines[1] = '{"text": "x", "metadata": {"v": 1e400}}'
    lines[2] = '{"text": "\\ud800"}'
    lines[4] = json.dumps({"text": "my own id", "id": "mine-1", "session_id": "rb"})
    path = tmp_path / "runbook.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("HIVEMIND_API_KEY", gateway.key())
    args = ["memories", "import", str(path), "--gateway-url", gateway.url, "--batch", "2"]
    for _ in range(2):  # the second run stores each line once
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "stored 4 of 6 memories" in result.output
        assert "line 2: cannot be sent as JSON" in result.output
        assert "line 3: cannot be sent as JSON" in result.output
        with gateway.client() as c:
            assert c.get("/v1/memories", params={"session_id": "rb"}).json()["count"] == 4
            assert c.get("/v1/memories/mine-1").json()["text"] == "my own id"


def test_the_import_command_names_lines_it_cannot_read_and_goes_on(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    good = json.dumps({"text": "a readable note", "session_id": "odd"}).encode()
    path = tmp_path / "odd.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                good,
                b'{"text": "x", "metadata": {"v": NaN}}',  # not a JSON number
                b"caf\xe9",  # not UTF-8
                b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser goes
                b'"just a string"',  # JSON, but not a memory: the gateway refuses it
                good.replace(b"readable", b"second"),
            ]
        )
        + b"\n"
    )
    monkeypatch.setenv("HIVEMIND_API_KEY", gateway.key())
    args = ["memories", "import", str(path), "--gateway-url", gateway.url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "stored 2 of 6 memories" in result.output
    assert "line 2: not JSON: NaN is not a JSON number" in result.output
    assert "line 3: not UTF-8 text" in result.output
    assert "line 4: not JSON" in result.output
    assert "line 5:" in result.output and "just a string" not in result.output.split("line 5:")[1]


def test_two_equal_lines_of_an_import_are_two_memories(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    path = tmp_path / "twice.jsonl"
    path.write_text('{"text": "ok", "session_id": "tw"}\n' * 2)
    monkeypatch.setenv("HIVEMIND_API_KEY", gateway.key())
    args = ["memories", "import", str(path), "--gateway-url", gateway.url]
    for _ in range(2):  # and a second run adds none
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        with gateway.client() as c:
            assert c.get("/v1/memories", params={"session_id": "tw"}).json()["count"] == 2


def test_a_text_the_embedding_service_refuses_never_holds_back_the_others(
    gateway: RunningGateway, internal_token: str, data_dir: Path
) -> None:
    """A batch the service refuses is sent again item by item; an item refused alone leaves
    the queue (its words still find it). Before, the same refused batch was retried every
    second, and no item of this tenant or of any tenant after it got a vector."""
    from hivemind_gateway.search.index import Item
    from support.embedding import running_embedding

    # the service's per-text limit set below what the gateway sends for a long memory
    with (
        running_embedding(internal_token, embedding_max_chars=300) as emb_url,
        running_gateway(gateway.redis_url, internal_token, data_dir, embedding_url=emb_url) as gw,
    ):
        gw.keys[("acme", "write")] = gateway.key()
        gw.keys[("zeta", "write")] = gateway.key("zeta")
        with gw.client() as c, gw.client("zeta") as z:
            long = c.post("/v1/memories", json={"text": "rotated keys " * 60}).json()
            short = [
                c.post("/v1/memories", json={"text": f"deployed service {i}"}).json()["id"]
                for i in range(5)
            ]
            other = z.post("/v1/memories", json={"text": "zeta moved its backups"}).json()

            def settled() -> bool:
                return all(
                    client.get("/v1/rag/stats").json()["pending_vectors"] == 0 for client in (c, z)
                )

            wait_until(settled, timeout=60, what="every item embedded or refused")
            found = c.post("/v1/memories/search", json={"query": "rotated keys"}).json()
            assert long["id"] in [m["id"] for m in found["data"]]  # by its words
    raw = redis_sync.Redis.from_url(gateway.redis_url)
    assert all(raw.exists(keys.vector("acme", MODEL, "memory", i)) for i in short)
    assert raw.exists(keys.vector("zeta", MODEL, "memory", other["id"]))
    assert not raw.exists(keys.vector("acme", MODEL, "memory", long["id"]))
    # what is embedded: whitespace runs are one space, then it is cut (4,000 leading spaces
    # were once cut to nothing, which the service refuses)
    item = Item(kind="memory", id="m", text=" " * 4000 + "hello\n\n  world")
    assert item.embed_input() == "hello world"


def test_only_a_refusal_of_the_texts_counts_as_refused(internal_token: str) -> None:
    """400/413/422 name the texts (each is then tried alone, and dropped if refused); a wrong
    token or URL is the service's fault: the client marks it down and the items stay queued."""
    import asyncio

    import httpx

    from hivemind_common.errors import Unavailable
    from hivemind_gateway.search.embedder import EmbeddingClient, Refused
    from support.embedding import running_embedding

    async def probe(url: str, token: str, text: str) -> tuple[str, bool]:
        http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"})
        client = EmbeddingClient(http, timeout_s=30)
        try:
            await client.embed([text])
            return "ok", client.available
        except Refused:
            return "refused", client.available
        except Unavailable:
            return "unavailable", client.available
        finally:
            await http.aclose()

    with running_embedding(internal_token, embedding_max_chars=50) as url:
        assert asyncio.run(probe(url, internal_token, "short")) == ("ok", True)
        assert asyncio.run(probe(url, internal_token, "long " * 20)) == ("refused", True)
        assert asyncio.run(probe(url, "not-the-token", "short")) == ("unavailable", False)


def test_the_import_command_refuses_a_huge_line_alone_and_derives_ids_for_null_ones(
    gateway: RunningGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line over the batch's byte budget made the gateway refuse its whole batch (413) and
    ended the import; a line with ``"id": null`` got no derived id, so a second run stored it
    twice."""
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    note = {"session_id": "big", "id": None}
    lines = [json.dumps({"text": f"ops note {i}", **note}) for i in range(4)]
    lines[1] = json.dumps({"text": "x" * (5 * 1024 * 1024), "session_id": "big"})
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n\u3000\n")  # an ideographic space: a blank line too
    monkeypatch.setenv("HIVEMIND_API_KEY", gateway.key())
    args = ["memories", "import", str(path), "--gateway-url", gateway.url]
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "stored 3 of 4 memories" in result.output
        assert "line 2: " in result.output and "bytes; a line may have" in result.output
        with gateway.client() as c:
            assert c.get("/v1/memories", params={"session_id": "big"}).json()["count"] == 3


def test_a_batch_sent_again_with_its_idempotency_key_stores_nothing_twice(
    gateway: RunningGateway,
) -> None:
    items = [{"text": f"retried note {i}", "session_id": "retry"} for i in range(3)]
    items.append({"text": "my own id", "id": "own-1", "session_id": "retry"})
    with gateway.client() as c:
        headers = {"Idempotency-Key": "import-2026-12-06-a"}
        first = c.post("/v1/memories/batch", json={"memories": items}, headers=headers).json()
        again = c.post("/v1/memories/batch", json={"memories": items}, headers=headers).json()
        assert first["stored"] == again["stored"] == 4
        assert [r["id"] for r in first["results"]] == [r["id"] for r in again["results"]]
        assert first["results"][3]["id"] == "own-1"
        assert c.get("/v1/memories", params={"session_id": "retry"}).json()["count"] == 4
        other = c.post(  # another key: other memories
            "/v1/memories/batch", json={"memories": items[:1]}, headers={"Idempotency-Key": "b"}
        ).json()
        assert other["stored"] == 1 and other["results"][0]["id"] != first["results"][0]["id"]
        bad = c.post(
            "/v1/memories/batch", json={"memories": items}, headers={"Idempotency-Key": "a b"}
        )
        assert bad.status_code == 400, bad.text
        assert c.get("/v1/memories", params={"session_id": "retry"}).json()["count"] == 5
