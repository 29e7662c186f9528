"""Every service builds from its settings, reports health, readiness and metrics."""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import pytest

from support.servers import serve_app

SERVICES = ["gateway", "mcp", "embedding", "inference", "trainer", "exporter"]


def _build(service: str, redis_url: str, token: str, data_dir: Path):  # type: ignore[no-untyped-def]
    app_mod = importlib.import_module(f"hivemind_{service}.app")
    settings_mod = importlib.import_module(f"hivemind_{service}.settings")
    cls = next(
        getattr(settings_mod, n)
        for n in dir(settings_mod)
        if n.endswith("Settings") and n.lower().startswith(service)
    )
    settings = cls(redis_url=redis_url, internal_token=token, data_dir=data_dir)
    return app_mod.create_app(settings)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_answers_healthz_and_metrics(
    service: str, redis_url: str, internal_token: str, data_dir: Path
) -> None:
    app = _build(service, redis_url, internal_token, data_dir)
    with serve_app(app) as base:
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200
        assert health.json()["service"] == service
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200
        assert "hivemind_http_requests_total" in metrics.text


def test_gateway_readyz_reports_redis_down_with_a_reason(
    internal_token: str, data_dir: Path
) -> None:
    # the start's key migrations wait out the retry deadline (30 s by default, a failover's
    # length) before they are postponed; 1 s here
    url = "redis://127.0.0.1:1/0?retry_deadline=1"
    app = _build("gateway", url, internal_token, data_dir)
    with serve_app(app) as base:
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert "redis" in body["reason"]


def test_gateway_readyz_is_200_when_redis_answers(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    app = _build("gateway", redis_url, internal_token, data_dir)
    with serve_app(app) as base:
        assert httpx.get(f"{base}/readyz").status_code == 200


def test_unknown_route_is_problem_json(redis_url: str, internal_token: str, data_dir: Path) -> None:
    app = _build("gateway", redis_url, internal_token, data_dir)
    with serve_app(app) as base:
        resp = httpx.get(f"{base}/v1/nothing-here")
        assert resp.status_code == 404
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["status"] == 404


def test_gateway_root_names_the_suite_and_reports_every_service(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    app = _build("gateway", redis_url, internal_token, data_dir)
    with serve_app(app) as base:
        body = httpx.get(f"{base}/").json()
        assert body["name"] == "hive-mind"
        assert body["version"]
        assert set(body["services"]) == set(SERVICES)
        assert body["services"]["gateway"]["status"] == "ready"
        # nothing else runs in this test, so the suite is degraded, not failing
        assert body["status"] == "degraded"
