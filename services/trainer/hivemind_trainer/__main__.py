"""``python -m hivemind_trainer``: parse settings once, run uvicorn."""

from __future__ import annotations

from hivemind_common.service_app import serve
from hivemind_trainer.app import create_app
from hivemind_trainer.settings import TrainerSettings


def main() -> None:
    serve(create_app, TrainerSettings())


if __name__ == "__main__":
    main()
