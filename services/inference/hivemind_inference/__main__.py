"""``python -m hivemind_inference``: parse settings once, run uvicorn."""

from __future__ import annotations

from hivemind_common.service_app import serve
from hivemind_inference.app import create_app
from hivemind_inference.settings import InferenceSettings


def main() -> None:
    serve(create_app, InferenceSettings())


if __name__ == "__main__":
    main()
