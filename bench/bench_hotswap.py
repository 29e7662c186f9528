"""Hot-swap under a steady 20 requests/s: failed requests and swap duration, good and corrupt.

Same process stack as ``bench_inference`` (retrieval off, so inference is what is measured).
An open-loop sender starts one short chat every 50 ms through the gateway, whatever the
latency. After a few seconds ``/admin/models/default/load`` swaps to a byte-identical copy of the
GGUF under a new version; later it is asked to load a truncated (corrupt) GGUF, which must fail
and leave the serving copy alone. Any non-200 answer or transport error counts as failed.
Writes ``hotswap.json``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_inference import TOKEN, Stack, llm_stack, percentile, say

RATE = 20.0
PHASE_S = 6.0
BODY = {
    "model": "default",
    "messages": [{"role": "user", "content": "Say hi"}],
    "max_tokens": 2,
    "temperature": 0.5,
    "hivemind": {"rag": False},
}


async def _phase(stack: Stack, swap: dict[str, str]) -> dict[str, Any]:
    """Send at RATE for PHASE_S seconds with a swap request in the middle."""
    results: list[tuple[float, int, str]] = []  # (latency ms, status, version)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        httpx.AsyncClient(
            base_url=stack.gateway_url, headers=stack.gateway_headers(), timeout=60, limits=limits
        ) as gw,
        httpx.AsyncClient(
            base_url=stack.inference_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as admin,
    ):

        async def one() -> None:
            t0 = time.perf_counter()
            try:
                r = await gw.post("/v1/chat/completions", json=BODY)
                status, version = r.status_code, r.headers.get("x-hivemind-model-version", "?")
            except httpx.HTTPError as exc:
                status, version = 0, type(exc).__name__
            results.append(((time.perf_counter() - t0) * 1000, status, version))

        async def swapper() -> dict[str, Any]:
            await asyncio.sleep(PHASE_S / 3)
            t0 = time.perf_counter()
            r = await admin.post("/admin/models/default/load", json=swap)
            return {
                "status": r.status_code,
                "wall_ms": round((time.perf_counter() - t0) * 1000, 1),
                "answer": r.json(),
            }

        swap_task = asyncio.create_task(swapper())
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < PHASE_S:
            tasks.append(asyncio.create_task(one()))
            n += 1
            await asyncio.sleep(max(0.0, start + n / RATE - time.perf_counter()))
        swap_result = await swap_task
        await asyncio.gather(*tasks)
    latencies = [r[0] for r in results]
    failed = [r for r in results if r[1] != 200]
    return {
        "sent": len(results),
        "failed": len(failed),
        "failures": [f"{s} {v}" for _, s, v in failed[:5]],
        "versions_seen": sorted({r[2] for r in results}),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
        "latency_max_ms": round(max(latencies), 1),
        "swap": swap_result,
    }


def main(out_dir: Path) -> dict[str, Any]:
    from hivemind_common.models_paths import default_llm_gguf

    src = default_llm_gguf()
    with llm_stack(embedding=False) as stack:
        good = stack.folder / "next.gguf"
        shutil.copyfile(src, good)
        corrupt = stack.folder / "corrupt.gguf"
        corrupt.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
        with httpx.Client(base_url=stack.gateway_url, headers=stack.gateway_headers()) as c:
            c.post("/v1/chat/completions", json=BODY, timeout=60).raise_for_status()
        good_phase = asyncio.run(_phase(stack, {"gguf": str(good), "version": "bench-v2"}))
        say(f"good swap: {good_phase}")
        bad_phase = asyncio.run(_phase(stack, {"gguf": str(corrupt), "version": "bench-bad"}))
        say(f"corrupt swap: {bad_phase}")
    result = {
        "rate_per_s": RATE,
        "phase_s": PHASE_S,
        "good_swap": good_phase,
        "corrupt_swap": bad_phase,
        "targets": {"failed_requests": 0},
        "note": "open-loop sender through the gateway; shared 2-core machine, noisy",
    }
    (out_dir / "hotswap.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
