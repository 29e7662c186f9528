"""``python -m hivemind_inference``: parse settings once, run uvicorn."""

from __future__ import annotations

import uvicorn

from hivemind_common.observability import configure_logging
from hivemind_inference.app import create_app
from hivemind_inference.settings import InferenceSettings


def main() -> None:
    settings = InferenceSettings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.resolved_port(),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
