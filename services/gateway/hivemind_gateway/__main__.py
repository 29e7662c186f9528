"""``python -m hivemind_gateway``: parse settings once, run uvicorn (one process per worker)."""

from __future__ import annotations

from fastapi import FastAPI

from hivemind_common.observability import configure_logging
from hivemind_common.service_app import exit_with_parent, serve, served
from hivemind_gateway.settings import GatewaySettings


def _create_app(settings: GatewaySettings) -> FastAPI:
    # imported here: with several workers the supervising process never builds an app
    from hivemind_gateway.app import create_app

    return create_app(settings)


def worker_app() -> FastAPI:
    """One worker's app (uvicorn calls this in each worker process it starts)."""
    exit_with_parent()
    settings = GatewaySettings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return served(_create_app(settings))


def main() -> None:
    settings = GatewaySettings()
    serve(
        _create_app,
        settings,
        workers=settings.worker_count(),
        worker_app="hivemind_gateway.__main__:worker_app",
    )


if __name__ == "__main__":
    main()
