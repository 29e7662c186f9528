"""The gateway fixture gives a running gateway whose keys authenticate."""

from __future__ import annotations

from support.gateway import RunningGateway


def test_gateway_fixture_serves_health(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        assert c.get("/healthz").status_code == 200
