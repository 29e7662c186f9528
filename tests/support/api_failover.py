"""The product's own writes through the gateway while a Redis primary is SIGKILLed.

Facts (``PUT /v1/facts/{key}``, idempotent by key) and memories (``POST /v1/memories`` with a
client-chosen ``id`` in the body or an ``Idempotency-Key`` header) are sent at a steady rate
(capped by the answers: 64 in flight at most); a primary is killed, the topology recovers, and
then:

1. every write answered 2xx must be readable with what it wrote (checked *before* any retry, so
   a retry cannot hide a lost write);
2. every write not answered 2xx must have got a retryable answer (503 with ``Retry-After`` in
   problem+json) or no answer at all (a cut connection): nothing else;
3. retrying those with the same ids converges: each is stored exactly once, and the tenant
   holds exactly the facts and memories written, no duplicate.

Used by ``tests/drills/test_gateway_failover_drill.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


@dataclass
class Write:
    """One API write, replayable as it was first sent."""

    seq: int
    kind: str  # fact | memory
    ident: str  # the fact's key or the memory's id
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    expected: str = ""  # the fact's value or the memory's text


@dataclass
class ApiDrillReport:
    topology: str
    killed_port: int = 0
    sent: int = 0
    rate_per_s: float = 0.0
    answered_2xx: int = 0
    answered_retryable: int = 0  # 503 + Retry-After, problem+json
    no_answer: int = 0  # the connection was cut or timed out: the client retries too
    unexpected: list[str] = field(default_factory=list)  # any other answer
    lost_after_2xx: list[str] = field(default_factory=list)  # answered 2xx, then missing
    lost_after_2xx_count: int = 0
    retried: int = 0
    retry_rounds: int = 0
    not_converged: list[str] = field(default_factory=list)
    facts_held: int = 0
    memories_held: int = 0
    facts_written: int = 0
    memories_written: int = 0
    failover_s: float = 0.0  # kill -> first 2xx of a write sent after the kill
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("unexpected", "lost_after_2xx", "not_converged"):
            out[k] = out[k][:10]
        return out


def make_write(seq: int) -> Write:
    """Every other write a fact; memories alternate a body id and an Idempotency-Key."""
    if seq % 2 == 0:
        key, value = f"drill/f{seq}", f"value {seq}"
        return Write(seq, "fact", key, "PUT", f"/v1/facts/{key}", {"value": value}, {}, value)
    text = f"drill memory number {seq}"
    if seq % 4 == 1:
        ident = f"drill-m{seq}"
        return Write(seq, "memory", ident, "POST", "/v1/memories", {"id": ident, "text": text})
    idem = f"drill-key-{seq}"
    ident = hashlib.sha256(idem.encode()).hexdigest()[:24]
    return Write(
        seq, "memory", ident, "POST", "/v1/memories", {"text": text}, {"Idempotency-Key": idem}
    )


def _fix(w: Write) -> Write:
    if w.kind == "memory":
        w.expected = str(w.body["text"])
    return w


def _retryable(resp: httpx.Response) -> bool:
    return (
        resp.status_code == 503
        and "retry-after" in resp.headers
        and resp.headers.get("content-type", "").startswith("application/problem+json")
    )


async def _send(client: httpx.AsyncClient, w: Write) -> httpx.Response:
    return await client.request(w.method, w.path, json=w.body, headers=w.headers)


async def _held(client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str], int, int]:
    """Every fact (key -> value) and memory (id -> text) the tenant holds, read page by page
    through the API, and the counts the API reports."""
    facts: dict[str, str] = {}
    memories: dict[str, str] = {}
    counts = []
    for path, field_name, into, key in (
        ("/v1/facts", "value", facts, "key"),
        ("/v1/memories", "text", memories, "id"),
    ):
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get(path, params=params)).raise_for_status().json()
            for item in page["data"]:
                into[item[key]] = item[field_name]
            cursor = page.get("next_cursor")
            if not cursor:
                counts.append(int(page["count"]))
                break
    return facts, memories, counts[0], counts[1]


def _stored(w: Write, facts: dict[str, str], memories: dict[str, str]) -> bool:
    return (facts if w.kind == "fact" else memories).get(w.ident) == w.expected


async def api_failover_drill(
    client: httpx.AsyncClient,
    *,
    topology: str,
    kill: Callable[[], int],
    recover: Callable[[], None],
    pause_replicas: Callable[[], Callable[[], None]] | None = None,
    pause_s: float = 0.6,
    rate: float = 200.0,
    before: int = 150,
    after: int = 150,
    timeout: float = 60.0,
) -> ApiDrillReport:
    """Write at up to ``rate``/s (64 in flight at most); ``kill()`` (returns the killed port)
    once ``before`` writes were answered 2xx; ``recover()`` (blocking, run in a thread) right
    after; stop once ``after`` writes sent after ``recover`` returned were answered 2xx; then
    check, retry, check again.

    ``timeout`` bounds each wait for writes: the ``before`` writes from the start, the
    ``after`` writes from the recovery (``recover`` bounds its own wait).

    ``pause_replicas()`` (returns the function that resumes them) makes the kill land while the
    replicas lag: it runs ``pause_s`` before the kill and they resume right after it, so writes
    the dying primary took alone are the ones a promoted replica lacks."""
    report = ApiDrillReport(topology=topology)
    started = time.monotonic()
    deadline = started + timeout
    ok: list[Write] = []
    pending: list[Write] = []
    in_flight: set[asyncio.Task[None]] = set()
    marks: dict[str, float] = {}
    first_ok_after_kill: list[float] = []
    limit = asyncio.Semaphore(64)

    async def one(w: Write, sent_at: float) -> None:
        try:  # the writer took the slot: a write is made only when one is free
            resp = await _send(client, w)
        except httpx.TransportError:
            report.no_answer += 1
            pending.append(w)
            return
        finally:
            limit.release()
        if resp.status_code in (200, 201):
            report.answered_2xx += 1
            ok.append(w)
            if "killed" in marks and sent_at > marks["killed"]:
                first_ok_after_kill.append(time.monotonic())
                if "recovered" in marks and sent_at > marks["recovered"]:
                    marks.setdefault("after_count", 0)
                    marks["after_count"] += 1
        elif _retryable(resp):
            report.answered_retryable += 1
            pending.append(w)
        else:
            report.unexpected.append(f"{w.method} {w.path}: {resp.status_code} {resp.text[:200]}")

    async def writer() -> None:
        seq = 0
        next_at = time.monotonic()
        while "stop" not in marks:
            now = time.monotonic()
            if now < next_at:
                await asyncio.sleep(next_at - now)
            next_at += 1.0 / rate
            # at most 64 in flight: when the gateway answers fewer than ``rate`` a second, the
            # writer waits for a slot rather than queueing writes behind it (a queue stamped
            # at creation sent "after the kill" writes long after it, and the drill then
            # spent minutes draining it); the report's rate is the rate really sent
            waited = limit.locked()
            await limit.acquire()
            if "stop" in marks:
                limit.release()
                break
            if waited:  # no burst to catch up on the time spent waiting for a slot
                next_at = max(next_at, time.monotonic())
            w = _fix(make_write(seq))
            seq += 1
            task = asyncio.create_task(one(w, time.monotonic()))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        report.sent = seq

    async def until(cond: Callable[[], bool], what: str, by: float) -> None:
        while not cond():
            if time.monotonic() > by:
                raise TimeoutError(f"api failover drill: timed out waiting for {what}")
            if report.unexpected:
                raise AssertionError(f"unexpected answers: {report.unexpected[:3]}")
            await asyncio.sleep(0.01)

    writing = asyncio.create_task(writer())
    try:
        await until(
            lambda: report.answered_2xx >= before, f"{before} writes before the kill", deadline
        )
        resume = pause_replicas() if pause_replicas is not None else None
        if resume is not None:
            await asyncio.sleep(pause_s)
        marks["killed"] = time.monotonic()
        try:
            report.killed_port = kill()
        finally:
            if resume is not None:
                resume()
        await asyncio.to_thread(recover)
        marks["recovered"] = time.monotonic()
        # its own ``timeout``, counted from the recovery: on a loaded machine the promotion and
        # the heal can take most of a deadline counted from the start (CI once timed out here)
        await until(
            lambda: marks.get("after_count", 0) >= after,
            f"{after} writes after recovery",
            marks["recovered"] + timeout,
        )
    finally:
        marks["stop"] = time.monotonic()
        await writing
        if in_flight:
            await asyncio.gather(*list(in_flight), return_exceptions=True)
    report.rate_per_s = round(report.sent / (marks["stop"] - started), 1)
    if first_ok_after_kill:
        report.failover_s = round(min(first_ok_after_kill) - marks["killed"], 2)

    # 1. nothing answered 2xx is missing (before any retry could put it back)
    facts, memories, _, _ = await _held(client)
    report.lost_after_2xx = [w.ident for w in ok if not _stored(w, facts, memories)]
    report.lost_after_2xx_count = len(report.lost_after_2xx)

    # 3. retrying what was not answered 2xx converges
    # counted from here, and at least one round: on a loaded machine the listing above can take
    # the time a deadline set at the start left (the retries were skipped, all "not converged")
    report.retried = len(pending)
    todo = list(pending)
    retry_until = time.monotonic() + 30
    while todo and (report.retry_rounds == 0 or time.monotonic() < retry_until):
        report.retry_rounds += 1
        answers = await asyncio.gather(*(_send(client, w) for w in todo), return_exceptions=True)
        again = []
        for w, resp in zip(todo, answers, strict=True):
            if isinstance(resp, httpx.Response) and resp.status_code in (200, 201):
                continue
            if isinstance(resp, httpx.Response) and not _retryable(resp):
                report.unexpected.append(f"retry {w.path}: {resp.status_code} {resp.text[:200]}")
                continue
            again.append(w)
        todo = again
        if todo:
            await asyncio.sleep(0.5)
    report.not_converged = [w.ident for w in todo]
    every = ok + pending
    facts, memories, report.facts_held, report.memories_held = await _held(client)
    report.not_converged += [w.ident for w in every if not _stored(w, facts, memories)]
    report.facts_written = len({w.ident for w in every if w.kind == "fact"})
    report.memories_written = len({w.ident for w in every if w.kind == "memory"})
    # what the listing holds, not only what it counts: one entry per id written, no other
    assert len(facts) == report.facts_held and len(memories) == report.memories_held
    report.seconds = round(time.monotonic() - started, 1)
    return report
