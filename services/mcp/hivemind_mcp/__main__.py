"""``python -m hivemind_mcp``: parse settings once, run uvicorn."""

from __future__ import annotations

from hivemind_common.service_app import serve
from hivemind_mcp.app import create_app
from hivemind_mcp.settings import McpSettings


def main() -> None:
    serve(create_app, McpSettings())


if __name__ == "__main__":
    main()
