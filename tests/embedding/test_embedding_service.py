"""The embedding service answers /embed and /v1/embeddings with the real shipped model."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from support.embedding import shared_embedding_url


@pytest.fixture
def embedding(internal_token: str) -> httpx.Client:
    url = shared_embedding_url(internal_token)
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {internal_token}"}, timeout=60
    ) as client:
        yield client


def test_embed_returns_unit_vectors_named_by_the_model(embedding: httpx.Client) -> None:
    r = embedding.post("/embed", json={"texts": ["redis runs on port 6379", "hello"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["dimensions"] == 384
    vecs = np.array(body["embeddings"])
    assert vecs.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


def test_similar_sentences_are_closer_than_unrelated_ones(embedding: httpx.Client) -> None:
    texts = ["the database listens on port 5432", "which port does postgres use", "I like pizza"]
    vecs = np.array(embedding.post("/embed", json={"texts": texts}).json()["embeddings"])
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2


def test_openai_shape_accepts_a_string_and_base64(embedding: httpx.Client) -> None:
    r = embedding.post(
        "/v1/embeddings",
        json={
            "input": "hello world",
            "model": "anything",
            "encoding_format": "base64",
            "user": "u",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert body["usage"]["prompt_tokens"] > 0
    raw = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    plain = embedding.post("/v1/embeddings", json={"input": ["hello world"]}).json()
    assert np.allclose(raw, plain["data"][0]["embedding"], atol=1e-5)


def test_the_official_openai_client_reads_our_embeddings(
    embedding: httpx.Client, internal_token: str
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=str(embedding.base_url) + "/v1", api_key=internal_token)
    out = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a", "b", "c"])
    assert [d.index for d in out.data] == [0, 1, 2]
    assert len(out.data[0].embedding) == 384


def test_concurrent_requests_each_get_their_own_rows(embedding: httpx.Client) -> None:
    texts = [f"fact number {i} about the build machine" for i in range(24)]
    alone = {
        t: embedding.post("/embed", json={"texts": [t]}).json()["embeddings"][0] for t in texts[:3]
    }

    def one(t: str) -> tuple[str, list[float]]:
        return t, embedding.post("/embed", json={"texts": [t]}).json()["embeddings"][0]

    with ThreadPoolExecutor(8) as pool:
        together = dict(pool.map(one, texts))
    for t, vec in alone.items():
        # alone, a text takes the traced float32 path; in a batch, the eager (maybe bfloat16)
        # one: the same vector within precision, and closer to its own row than to any other
        cosines = {u: float(np.dot(vec, row)) for u, row in together.items()}
        assert max(cosines, key=cosines.__getitem__) == t and cosines[t] > 0.9995


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # a body that fails the schema is 422 on native routes, like the gateway's
        ({"texts": []}, 422),
        ({"texts": [""]}, 400),
        ({"texts": ["   "]}, 400),
        ({"texts": "not a list"}, 422),
        ({"texts": [1, 2]}, 422),
        ({"texts": ["ok"], "unknown": 1}, 422),
        ({"texts": ["x" * 9000]}, 413),
        ({"texts": ["x"] * 300}, 413),
        ({"texts": ["nul \x00 inside"]}, 400),
        ({"texts": ["escape \x1b[31m inside"]}, 400),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(
    embedding: httpx.Client, body: dict[str, object], status: int
) -> None:
    r = embedding.post("/embed", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == status and r.json()["detail"]


def test_a_lone_surrogate_is_refused_naming_it(embedding: httpx.Client) -> None:
    raw = json.dumps({"texts": ["ok", "half \ud800 a pair"]}).encode()  # escaped as \ud800
    r = embedding.post("/embed", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "U+D800" in r.json()["detail"]


def test_openai_route_refuses_token_arrays_and_wrong_dimensions(embedding: httpx.Client) -> None:
    assert embedding.post("/v1/embeddings", json={"input": [[1, 2, 3]]}).status_code == 400
    # a long list of wrong items was validated item by item: an error each, all listed
    many = embedding.post("/embed", json={"texts": [1] * 200_000})
    assert many.status_code == 422 and len(many.content) < 20_000
    r = embedding.post("/v1/embeddings", json={"input": "x", "dimensions": 128})
    assert r.status_code == 400 and "dimensions" in r.json()["error"]["message"]


def test_token_counts_run_on_the_encoders_own_thread() -> None:
    """/v1/embeddings counted its tokens on another thread with the encoder's tokenizer, which
    keeps its padding settings on itself: a count beside an encode turned padding off under
    the batch (it failed, 503s, and the traced fast path was switched off for good)."""
    import asyncio
    import threading

    from hivemind_embedding.batcher import MicroBatcher

    seen: list[str] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.append(threading.current_thread().name)
        return np.zeros((len(texts), 4), dtype=np.float32)

    def count(texts: list[str]) -> int:
        seen.append(threading.current_thread().name)
        return len(texts)

    async def go() -> int:
        batcher = MicroBatcher(encode)
        await batcher.start()
        try:
            await batcher.embed(["a", "b"])
            return await batcher.on_encoder_thread(count, ["a", "b"])
        finally:
            await batcher.close()

    assert asyncio.run(go()) == 2
    assert len(set(seen)) == 1 and seen[0].startswith("encoder")


def test_odd_unicode_is_embedded(embedding: httpx.Client) -> None:
    r = embedding.post("/embed", json={"texts": ["naïve café 🚀 \u200b日本語 \U0001f600"]})
    assert r.status_code == 200
    assert len(r.json()["embeddings"][0]) == 384


def test_calls_without_the_internal_token_are_refused(embedding: httpx.Client) -> None:
    r = httpx.post(str(embedding.base_url) + "/embed", json={"texts": ["x"]}, timeout=10)
    assert r.status_code == 401
    r = httpx.post(
        str(embedding.base_url) + "/embed",
        json={"texts": ["x"]},
        headers={"Authorization": "Bearer wrong"},
        timeout=10,
    )
    assert r.status_code == 401


def test_concurrent_requests_are_encoded_in_shared_batches(internal_token: str) -> None:
    from support.embedding import running_embedding

    with running_embedding(internal_token, embedding_batch_window_ms=20.0) as url:
        headers = {"Authorization": f"Bearer {internal_token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            client.post("/embed", json={"texts": ["warm up"]}).raise_for_status()
            before = client.get("/info").json()

            def one(i: int) -> int:
                return client.post("/embed", json={"texts": [f"text {i}"]}).status_code

            with ThreadPoolExecutor(16) as pool:
                assert set(pool.map(one, range(32))) == {200}
            after = client.get("/info").json()
    assert after["texts"] - before["texts"] == 32
    assert after["batches"] - before["batches"] < 32


def test_bfloat16_vectors_match_float32_ones() -> None:
    from hivemind_embedding.encoder import (
        SentenceEncoder,
        default_model_dir,
        resolve_precision,
    )

    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("auto", "cuda") == "float32"
    assert resolve_precision("auto", "cpu") in ("float32", "bfloat16")
    texts = ["redis listens on port 6379", "which editor do I use", "naïve café 日本語"]
    full = SentenceEncoder.load(default_model_dir(), model_id="m", threads=1, precision="float32")
    half = SentenceEncoder(full._model, "m", precision="bfloat16")  # forced, even if emulated
    cos = np.sum(full.encode(texts) * half.encode(texts), axis=1)
    assert half.precision == "bfloat16" and cos.min() > 0.9999, cos


def test_the_traced_fast_path_gives_the_eager_models_vectors() -> None:
    from hivemind_embedding.encoder import SentenceEncoder, cpu_has_fast_bf16, default_model_dir
    from hivemind_embedding.fast_path import FastPath

    texts = ["redis listens on port 6379", "which editor do I use", "naïve café " * 80]
    texts += [f"turn {i}: " + "word " * (2 + 9 * (i % 4)) for i in range(21)]
    eager = None
    precisions = ["float32", "bfloat16"] if cpu_has_fast_bf16() else ["float32"]
    for precision in precisions:
        enc = SentenceEncoder.load(
            default_model_dir(), model_id="m", threads=1, precision=precision, sub_batch=4
        )
        assert enc.fast_path  # MiniLM is transformer + mean pooling + normalise
        if eager is None:
            eager = SentenceEncoder(enc._model, "m", precision="float32").encode(texts)
        one_by_one = np.concatenate([enc.encode([t]) for t in texts])
        batched = enc.encode(texts)  # six passes of like lengths, put back in order
        floor = 0.9999 if precision == "float32" else 0.9995
        for rows in (one_by_one, batched):
            assert rows.dtype == np.float32 and rows.shape == eager.shape
            assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
            assert np.sum(rows * eager, axis=1).min() > floor, precision
        # no texts: no rows, and the fast path stays on (the tokenizer raised on an empty
        # list, and any failure there switched the process to the eager model for good)
        assert enc.encode([]).shape == (0, enc.dimensions) and enc.fast_path
    assert FastPath.build([object(), object()]) is None  # another layout stays eager


def test_a_tokenizer_that_pads_on_the_left_leaves_the_fast_path_off() -> None:
    """The fast path pads its passes itself, on the right with one segment of type 0 (BERT's
    layout); a tokenizer that pads on the left (XLNet's) would get shifted positions."""
    from sentence_transformers import SentenceTransformer

    from hivemind_embedding.encoder import default_model_dir
    from hivemind_embedding.fast_path import FastPath

    model = SentenceTransformer(str(default_model_dir()), device="cpu", local_files_only=True)
    assert FastPath.build(model) is not None
    model.tokenizer.padding_side = "left"
    assert FastPath.build(model) is None


def test_the_fast_path_encodes_in_passes_of_like_lengths() -> None:
    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir

    enc = SentenceEncoder.load(
        default_model_dir(), model_id="m", threads=1, workers=1, precision="float32", sub_batch=4
    )
    fast = enc._fast
    passes: list[list[list[int]]] = []
    real = fast._pass
    fast._pass = lambda pieces: (passes.append(pieces), real(pieces))[1]
    # as many characters, not as many word pieces: punctuation is a piece a character, a
    # common word one piece for all its letters (code beside prose in the reference library)
    code = [f"f{i}(" + "a,b;" * (2 + i) for i in range(5)]
    prose = [f"turn {i}: " + "internationalization " * (1 + i) for i in range(5)]
    texts = [t for pair in zip(code, prose, strict=True) for t in pair]
    rows = enc.encode(texts)
    assert [len(p) for p in passes] == [4, 4, 2]
    lengths = [len(ids) for p in passes for ids in p]  # word pieces, in the order passes ran
    assert lengths == sorted(len(ids) for ids in fast._pieces(texts))

    def padded(groups: list[list[int]]) -> int:  # pieces a forward pass runs, padding included
        return sum(max(g) * len(g) for g in groups)

    by_chars = [len(fast._pieces([t])[0]) for t in sorted(texts, key=len)]
    assert padded([lengths[i : i + 4] for i in range(0, 10, 4)]) < padded(
        [by_chars[i : i + 4] for i in range(0, 10, 4)]
    )  # sorting by characters would pad a prose text to a code text's length
    alone = np.concatenate([enc.encode([t]) for t in texts])
    assert np.sum(rows * alone, axis=1).min() > 0.9999  # each row back in its text's place


def test_a_batch_runs_in_passes_of_like_lengths_with_the_same_vectors() -> None:
    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir
    from hivemind_embedding.settings import EmbeddingSettings

    assert EmbeddingSettings(internal_token="t").embedding_sub_batch == 16
    enc = SentenceEncoder.load(
        default_model_dir(),
        model_id="m",
        threads=1,
        precision="float32",
        sub_batch=4,
        fast_path=False,  # the eager model's own passes
    )
    texts = [f"turn {i}: " + "word " * (3 + 7 * (i % 5)) for i in range(10)]
    passes: list[tuple[int, int]] = []  # (texts, padded length) of each forward pass
    hook = enc._model.register_forward_hook(
        lambda _m, args, _out: passes.append(tuple(args[0]["input_ids"].shape))
    )
    try:
        split = enc.encode(texts)
    finally:
        hook.remove()
    assert [n for n, _ in passes] == [4, 4, 2]
    assert len({length for _, length in passes}) == 3  # short texts are not padded to the longest
    whole = SentenceEncoder(enc._model, "m", precision="float32", sub_batch=64).encode(texts)
    assert np.sum(split * whole, axis=1).min() > 0.9999


def test_threads_are_planned_as_one_thread_a_pass_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from hivemind_embedding import encoder

    monkeypatch.setattr(encoder.os, "cpu_count", lambda: 2)
    assert encoder.plan_threads() == (2, 1)  # auto: both cores, a pass on each
    assert encoder.plan_threads(threads=1) == (1, 1)  # threads are the encoder's in all
    assert encoder.plan_threads(threads=2) == (2, 1)
    assert encoder.plan_threads(workers=1) == (1, 2)  # the old layout: one pass, both cores
    assert encoder.plan_threads(workers=1, threads=2) == (1, 2)
    assert encoder.plan_threads(workers=3, threads=2) == (3, 1)  # never less than a thread
    monkeypatch.setattr(encoder.os, "cpu_count", lambda: 16)
    assert encoder.plan_threads() == (4, 1)  # at most 4 by default
    assert encoder.plan_threads(workers=2, threads=8) == (2, 4)
    monkeypatch.setattr(encoder.os, "cpu_count", lambda: None)
    assert encoder.plan_threads() == (1, 1)


def test_without_the_fast_path_the_eager_model_gets_every_thread() -> None:
    import torch

    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir

    before = torch.get_num_threads()
    try:
        enc = SentenceEncoder.load(
            default_model_dir(), model_id="m", threads=2, fast_path=False, precision="float32"
        )
        assert not enc.fast_path and enc.workers == 1
        assert torch.get_num_threads() == 2  # not the one thread a pass of the fast path
    finally:
        torch.set_num_threads(before)


def test_close_waits_for_the_encoder_call_in_flight() -> None:
    """The service closes its batcher, then the encoder's pass workers: a call still running
    must end first (closing under it failed its passes and switched the fast path off)."""
    import asyncio
    import threading

    from hivemind_common.errors import Unavailable
    from hivemind_embedding.batcher import MicroBatcher

    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        started.set()
        assert release.wait(60)
        done.append(len(texts))
        return np.zeros((len(texts), 4), dtype=np.float32)

    async def go() -> None:
        batcher = MicroBatcher(encode)
        await batcher.start()
        call = asyncio.ensure_future(batcher.embed(["a", "b"]))
        assert await asyncio.to_thread(started.wait, 60)
        closing = asyncio.ensure_future(batcher.close())
        for _ in range(20):  # let close() run as far as it goes without the call ending
            await asyncio.sleep(0)
        assert not closing.done() and not done
        release.set()
        await closing
        assert done == [2]
        with pytest.raises(Unavailable):  # answered, not left waiting for a task now gone
            await asyncio.wait_for(call, 60)

    asyncio.run(go())


def test_the_passes_of_one_call_run_side_by_side_with_the_same_vectors() -> None:
    """Two one-thread passes at once instead of one two-thread pass: every worker gets a pass
    of a call (16 texts: two of 8), and the rows come back in their texts' places."""
    import threading

    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir

    enc = SentenceEncoder.load(
        default_model_dir(), model_id="m", threads=1, workers=2, precision="float32"
    )
    fast = enc._fast
    assert enc.workers == fast.workers == 2
    texts = [f"turn {i}: " + "word " * (2 + 5 * (i % 4)) for i in range(16)]
    alone = np.concatenate([enc.encode([t]) for t in texts])
    # each pass waits here for the other: two passes that ran one after the other would
    # break the barrier at its deadline instead of meeting
    meet = threading.Barrier(2, timeout=60)
    seen: list[tuple[str, int]] = []
    real = fast._pass

    def pass_(pieces: list[list[int]]) -> np.ndarray:
        seen.append((threading.current_thread().name, len(pieces)))
        meet.wait()
        return real(pieces)

    fast._pass = pass_
    try:
        rows = enc.encode(texts)
    finally:
        fast._pass = real
    assert sorted(n for _, n in seen) == [8, 8]
    assert len({name for name, _ in seen}) == 2
    assert all(name.startswith("encoder-pass") for name, _ in seen)
    assert np.sum(rows * alone, axis=1).min() > 0.9999  # each row in its text's place
    # one text is one pass (on the pool too); a call of 40 runs 16, 16 and 8
    assert [len(p) for p in fast._plan(fast._pieces(texts[:1]))] == [1]
    assert [len(p) for p in fast._plan(fast._pieces(texts * 2 + texts[:8]))] == [16, 16, 8]
    # a few texts are not cut into passes of one (those would all run the traced copy)
    assert [len(p) for p in fast._plan(fast._pieces(texts[:2]))] == [2]
    assert [len(p) for p in fast._plan(fast._pieces(texts[:3]))] == [2, 1]
    enc.close()
    assert enc.encode(texts[:3]).shape == (3, 384)  # a closed pool starts again
    enc.close()


def test_passes_start_longest_first() -> None:
    """The pool took a call's passes shortest first, so one worker ran the longest pass alone
    at the end of every call while the other waited; longest first, they end together."""
    import threading

    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir

    enc = SentenceEncoder.load(
        default_model_dir(), model_id="m", threads=1, workers=2, precision="float32"
    )
    fast = enc._fast
    texts = [f"turn {i}: " + "word " * (2 + 20 * (i % 4)) for i in range(64)]
    started: list[int] = []
    lock = threading.Lock()
    real = fast._pass

    def pass_(pieces: list[list[int]]) -> np.ndarray:
        with lock:
            started.append(max(len(p) for p in pieces))
        return real(pieces)

    fast._pass = pass_
    try:
        rows = enc.encode(texts)
    finally:
        fast._pass = real
        enc.close()
    assert len(started) == 4
    widths = sorted(started, reverse=True)
    assert sorted(started[:2], reverse=True) == widths[:2], started  # the two longest first
    alone = np.concatenate([enc.encode([t]) for t in texts[:8]])
    assert np.sum(rows[:8] * alone, axis=1).min() > 0.9999  # rows in their texts' places
    enc.close()


def test_token_counts_and_tokenizing_share_the_encoders_tokenizer_lock() -> None:
    """The service runs two encoder calls at once, so a count or a call's tokenizing may run
    beside another call's: every use of the shared tokenizer takes one lock."""
    import threading

    from hivemind_embedding.encoder import SentenceEncoder, default_model_dir

    enc = SentenceEncoder.load(default_model_dir(), model_id="m", precision="float32")
    assert enc._fast is not None and enc._tokenizer_lock is enc._fast.tokenizer_lock
    got: list[object] = []
    with enc._tokenizer_lock:
        workers = [
            threading.Thread(target=lambda: got.append(enc.count_tokens(["one two three"]))),
            threading.Thread(target=lambda: got.append(enc.encode(["one two three"]).shape)),
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(0.5)
        assert all(w.is_alive() for w in workers) and not got  # both wait for the lock
    for w in workers:
        w.join(60)
    assert sorted(map(str, got)) == sorted(["5", "(1, 384)"])
    enc.close()


def test_two_encoder_calls_run_at_once_and_close_answers_both() -> None:
    """With ``calls=2`` a second call is gathered and encoded while the first runs (the pass
    workers never wait for the gap between calls); closing answers the jobs of both and waits
    for both calls to end."""
    import asyncio
    import threading

    from hivemind_common.errors import Unavailable
    from hivemind_embedding.batcher import MicroBatcher

    # each call waits here for the other: calls one after the other would break the barrier
    meet = threading.Barrier(2, timeout=60)
    release = threading.Event()
    holding = threading.Semaphore(0)
    done: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        meet.wait()
        if texts[0].startswith("hold"):
            holding.release()
            assert release.wait(60)
        done.append(texts)
        return np.full((len(texts), 4), float(len(done)), dtype=np.float32)

    async def go() -> None:
        batcher = MicroBatcher(encode, max_batch=2, calls=2)
        await batcher.start()
        a = asyncio.ensure_future(batcher.embed(["a", "b"]))
        b = asyncio.ensure_future(batcher.embed(["c", "d"]))
        rows = await asyncio.wait_for(asyncio.gather(a, b), 60)
        assert [r.shape for r in rows] == [(2, 4), (2, 4)]
        assert sorted(map(sorted, done)) == [["a", "b"], ["c", "d"]]
        done.clear()
        held = [asyncio.ensure_future(batcher.embed([f"hold {i}", "x"])) for i in range(2)]
        queued = asyncio.ensure_future(batcher.embed(["later", "y"]))
        for _ in range(2):  # both calls inside the encoder
            assert await asyncio.to_thread(holding.acquire, True, 60)
        closing = asyncio.ensure_future(batcher.close())
        for _ in range(20):  # close() runs as far as it goes while both calls are held
            await asyncio.sleep(0)
        assert not closing.done() and not done
        release.set()
        await asyncio.wait_for(closing, 60)
        assert len(done) == 2  # both calls ended before close() returned
        for job in (*held, queued):
            with pytest.raises(Unavailable):
                await asyncio.wait_for(job, 60)

    asyncio.run(go())


@pytest.mark.parametrize("close_first", [False, True])
def test_close_as_a_request_arrives_during_gathering_still_stops_the_batcher(
    close_first: bool,
) -> None:
    """Python 3.11's asyncio.wait_for returns the awaited result, swallowing the cancel, when
    the cancel comes in the loop turn the result arrived in: close() then waited forever for
    a batcher that went on gathering. A request queued just before close() is that turn."""
    import asyncio

    from hivemind_common.errors import Unavailable
    from hivemind_embedding.batcher import MicroBatcher, _Job

    def encode(texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)

    async def go() -> None:
        batcher = MicroBatcher(encode, window_s=30.0)
        await batcher.start()
        batcher._company = True  # callers have been arriving together: the next one waits
        first = asyncio.ensure_future(batcher.embed(["a"]))
        for _ in range(20):  # the batcher holds "a" and waits for company
            await asyncio.sleep(0)
        assert batcher._gathering and not first.done()
        late = _Job(["b"], asyncio.get_running_loop().create_future())
        worker = batcher._worker
        assert worker is not None
        if close_first:  # close() runs first; its cancel meets a get() the request ended
            closing = asyncio.ensure_future(batcher.close())
            batcher._queue.put_nowait(late)
        else:  # the request wakes the batcher, close() follows in the same turn
            batcher._queue.put_nowait(late)
            closing = asyncio.ensure_future(batcher.close())
        finished, _ = await asyncio.wait([closing], timeout=30)  # a deadline, not a timing
        if not finished:  # the cancel was swallowed: the batcher gathered on, close() waits
            worker.cancel()
            await closing
        assert finished and worker.done()
        for job in (first, late.future):
            with pytest.raises(Unavailable):
                await asyncio.wait_for(job, 10)

    asyncio.run(go())
