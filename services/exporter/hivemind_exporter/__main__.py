"""``python -m hivemind_exporter``: parse settings once, run uvicorn."""

from __future__ import annotations

from hivemind_common.service_app import serve
from hivemind_exporter.app import create_app
from hivemind_exporter.settings import ExporterSettings


def main() -> None:
    serve(create_app, ExporterSettings())


if __name__ == "__main__":
    main()
