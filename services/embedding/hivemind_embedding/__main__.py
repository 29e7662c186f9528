"""``python -m hivemind_embedding``: parse settings once, run uvicorn."""

from __future__ import annotations

from hivemind_common.service_app import serve
from hivemind_embedding.app import create_app
from hivemind_embedding.settings import EmbeddingSettings


def main() -> None:
    serve(create_app, EmbeddingSettings())


if __name__ == "__main__":
    main()
