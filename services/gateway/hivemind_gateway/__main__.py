"""``python -m hivemind_gateway``: parse settings once, run uvicorn."""

from __future__ import annotations

from hivemind_common.service_app import serve
from hivemind_gateway.app import create_app
from hivemind_gateway.settings import GatewaySettings


def main() -> None:
    serve(create_app, GatewaySettings())


if __name__ == "__main__":
    main()
