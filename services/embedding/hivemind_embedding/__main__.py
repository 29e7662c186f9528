"""``python -m hivemind_embedding``: parse settings once, run uvicorn."""

from __future__ import annotations

import os

# Before torch loads libgomp: idle OpenMP workers sleep instead of spinning. On a host whose
# cores are shared with other busy processes (the gateway, llama.cpp, a training run), spinning
# workers and the barrier that waits for a descheduled one made a one-text encode take
# 270-490 ms instead of 14-16 ms at load average ~3.5 on 2 cores. Set OMP_WAIT_POLICY=ACTIVE
# to get the spinning back on a host the encoder has to itself.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hivemind_common.service_app import serve
from hivemind_embedding.app import create_app
from hivemind_embedding.settings import EmbeddingSettings


def main() -> None:
    serve(create_app, EmbeddingSettings())


if __name__ == "__main__":
    main()
