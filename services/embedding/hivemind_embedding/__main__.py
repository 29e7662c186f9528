"""``python -m hivemind_embedding``: parse settings once, run uvicorn."""

from __future__ import annotations

import os

# Before torch loads libgomp: an idle OpenMP worker spins ~1000 rounds, then sleeps. libgomp's
# default spin (300,000 rounds) wins ~0 ms on a quiet box but, when the cores are shared with
# other busy processes (the gateway, llama.cpp, a training run), spinning workers and the
# barrier waiting for a descheduled one made a one-text encode take 270-720 ms instead of
# ~20 ms (2 cores, load ~4). Never spinning (OMP_WAIT_POLICY=PASSIVE) is the most robust
# under load (19 ms) but pays a wake-up per parallel region on a quiet box (15.5 vs 11.4 ms
# per one-text encode); 1000 rounds keeps the quiet figure and gives 25-29 ms under load.
# Set GOMP_SPINCOUNT or OMP_WAIT_POLICY yourself to choose otherwise.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from hivemind_common.service_app import serve
from hivemind_embedding.app import create_app
from hivemind_embedding.settings import EmbeddingSettings


def main() -> None:
    serve(create_app, EmbeddingSettings())


if __name__ == "__main__":
    main()
