"""Agent sessions: prompt reuse across turns, and the gateway's cost of the Messages wire format.

1. Prompt reuse (in process, the shipped SmolLM2, one thread): a 10-turn agent session (a long
   system prompt, then each turn resends the whole history plus one new exchange), each turn
   answered with ``max_tokens=1`` so the time is prompt processing. Three ways, interleaved:
   ``reuse`` (llama.cpp keeps the evaluated tokens and evaluates only the new tail),
   ``no_reuse`` (the model's state is reset before every turn) and ``changing_head`` (a
   per-request line at the head of the system prompt, as Claude Code's attribution line would be
   if the gateway did not strip it: nothing can be reused). Then two sessions taking turns on
   one copy, without and with the prompt cache (``HIVEMIND_PROMPT_CACHE_MB``).
2. Gateway overhead of ``/v1/messages`` vs ``/v1/chat/completions`` (same stack as
   ``bench_gateway_overhead``, retrieval off, sampled so the cache is bypassed), interleaved.

Writes ``agent_session.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_inference import Stack, llm_stack, percentile, say

TURNS = 10
ROUNDS = 3
PAIRS = 30
SYSTEM = (
    "You are a coding agent working in a Python repository. Read files before changing them, "
    "keep changes small, run the tests after each change, and explain what you did in one "
    "short paragraph. Tools: read_file(path), write_file(path, text), run(cmd), grep(pattern). "
) * 8


def _history(turn: int, head: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": head + SYSTEM}]
    for i in range(turn + 1):
        messages.append(
            {
                "role": "user",
                "content": f"Step {i}: open src/module_{i}.py, find parse_{i} and tell me what "
                f"it returns for an empty input, then suggest a test for it.",
            }
        )
        if i < turn:
            messages.append(
                {
                    "role": "assistant",
                    "content": f"parse_{i} returns an empty list for an empty input. A test: "
                    f"assert parse_{i}('') == [] in tests/test_module_{i}.py, next to the "
                    "existing cases, run with pytest -q.",
                }
            )
    return messages


def _session(copy: Any, mode: str) -> dict[str, Any]:
    from hivemind_inference import generate
    from hivemind_inference.schemas import ChatRequest

    copy.llama.reset()
    times: list[float] = []
    tokens: list[int] = []
    for turn in range(TURNS):
        head = f"x-request: {time.perf_counter_ns()}\n" if mode == "changing_head" else ""
        req = ChatRequest(messages=_history(turn, head), max_tokens=1, temperature=0)
        if mode == "no_reuse":
            copy.llama.reset()
        started = time.perf_counter()
        out = generate.chat_once(copy, req, threading.Event(), 1)
        times.append((time.perf_counter() - started) * 1000)
        tokens.append(out["usage"]["prompt_tokens"])
    return {"total_ms": sum(times), "per_turn_ms": times, "prompt_tokens": tokens}


def _interleaved(copy: Any, *, cached: bool) -> float:
    """Two sessions taking turns on one copy (each evicts the other's prefix); total ms."""
    from hivemind_inference import generate
    from hivemind_inference.schemas import ChatRequest

    copy.enter("bench-off", 0)  # drops any saved states; a partition of its own
    copy.enter("bench", 512 * 1024 * 1024 if cached else 0)  # both sessions: one tenant's
    total = 0.0
    for turn in range(TURNS):
        for head in ("Project alpha.\n", "Project beta.\n"):
            req = ChatRequest(messages=_history(turn, head), max_tokens=1, temperature=0)
            started = time.perf_counter()
            generate.chat_once(copy, req, threading.Event(), 1)
            total += (time.perf_counter() - started) * 1000
    copy.llama.set_cache(None)
    return total


def _prompt_reuse() -> dict[str, Any]:
    from hivemind_common.models_paths import default_llm_gguf
    from hivemind_inference.engine import ModelCopy

    copy = ModelCopy(
        name="default", version="base", gguf=default_llm_gguf(), lora=None, n_ctx=4096, threads=1
    )
    copy.load()
    try:
        totals: dict[str, list[float]] = {"reuse": [], "no_reuse": [], "changing_head": []}
        last: dict[str, Any] = {}
        for _ in range(ROUNDS):
            for mode in totals:
                run = _session(copy, mode)
                totals[mode].append(run["total_ms"])
                last[mode] = run
        interleaved = {
            "two_sessions_taking_turns_ms": round(_interleaved(copy, cached=False), 1),
            "same_with_prompt_cache_ms": round(_interleaved(copy, cached=True), 1),
        }
    finally:
        copy.close()
    medians = {mode: statistics.median(values) for mode, values in totals.items()}
    return {
        "turns": TURNS,
        "rounds": ROUNDS,
        "prompt_tokens_per_turn": last["reuse"]["prompt_tokens"],
        "session_total_ms_median": {m: round(v, 1) for m, v in medians.items()},
        "speedup_reuse_vs_no_reuse": round(medians["no_reuse"] / medians["reuse"], 2),
        "reuse_per_turn_ms": [round(t, 1) for t in last["reuse"]["per_turn_ms"]],
        "no_reuse_per_turn_ms": [round(t, 1) for t in last["no_reuse"]["per_turn_ms"]],
        "interleaved_sessions": interleaved,  # HIVEMIND_PROMPT_CACHE_MB off vs on
    }


def _wire_overhead(stack: Stack) -> dict[str, Any]:
    prompt = [{"role": "user", "content": "Name one planet."}]
    chat = {"model": "default", "messages": prompt, "max_tokens": 1, "temperature": 0.5}
    chat["hivemind"] = {"rag": False}
    messages = {**chat, "model": "claude-x"}
    times: dict[str, list[float]] = {"chat": [], "messages": []}
    with httpx.Client(
        base_url=stack.gateway_url, headers=stack.gateway_headers(), timeout=60
    ) as gw:
        for i in range(PAIRS + 5):
            order = [("chat", "/v1/chat/completions", chat), ("messages", "/v1/messages", messages)]
            for name, path, body in order if i % 2 else order[::-1]:
                started = time.perf_counter()
                gw.post(path, json=body).raise_for_status()
                if i >= 5:  # warm-up
                    times[name].append((time.perf_counter() - started) * 1000)
    p50 = {name: percentile(values, 50) for name, values in times.items()}
    return {
        "pairs": PAIRS,
        "chat_p50_ms": round(p50["chat"], 2),
        "messages_p50_ms": round(p50["messages"], 2),
        "messages_minus_chat_p50_ms": round(p50["messages"] - p50["chat"], 2),
    }


def main(out_dir: Path) -> dict[str, Any]:
    reuse = _prompt_reuse()
    say(f"prompt reuse: {reuse['session_total_ms_median']}")
    with llm_stack(embedding=False) as stack:
        wire = _wire_overhead(stack)
    say(f"wire formats: {wire}")
    result = {
        "prompt_reuse": reuse,
        "wire_format_overhead": wire,
        "note": "SmolLM2-135M on one thread; shared 2-core machine, noisy; wall times",
    }
    (out_dir / "agent_session.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
