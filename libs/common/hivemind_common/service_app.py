"""The rooms every service shares: health, readiness, metrics, errors, request context.

A service's ``create_app(settings)`` calls :func:`base_app` with its lifespan, then adds its own
routers. Readiness checks are coroutines put in ``app.state.ready_checks`` by the lifespan, so
``/readyz`` answers 503 with a reason until each dependency answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from hivemind_common.body_limit import BodyLimitMiddleware, BodyLimits
from hivemind_common.credentials import CredentialsRequiredMiddleware
from hivemind_common.error_handlers import install_error_handlers
from hivemind_common.gc_pauses import freeze_after_start, log_gc_pauses, watch_gc_pauses
from hivemind_common.observability import RequestContextMiddleware
from hivemind_common.scrape_metrics import SERVICE_READY, run_samplers
from hivemind_common.wire import RouteWires

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[Any]]
READY_TIMEOUT_S = 2.0

__version__ = "0.1.0"


async def run_ready_checks(checks: dict[str, ReadyCheck]) -> tuple[bool, dict[str, str]]:
    """Run every check with a timeout; (all ok, {name: "ok" | reason})."""

    async def one(name: str, check: ReadyCheck) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT_S)
            return name, "ok"
        except TimeoutError:
            return name, f"no answer within {READY_TIMEOUT_S:.0f}s"
        except Exception as exc:  # a readiness probe reports, it never raises
            return name, f"{type(exc).__name__}: {exc}"[:300]

    results = dict(await asyncio.gather(*(one(n, c) for n, c in checks.items())))
    return all(v == "ok" for v in results.values()), results


def base_app(
    *,
    service: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    version: str = __version__,
    body_limits: BodyLimits | None = None,
    keyed_paths: Callable[[str], bool] | None = None,
    session_cookie: str | None = None,
) -> FastAPI:
    """A FastAPI app with /healthz, /readyz, /metrics, error handlers, request metrics and body
    caps (``body_limits``, else :data:`~hivemind_common.body_limit.DEFAULT_MAX_BODY_BYTES`).
    ``keyed_paths``: paths where a request with no API key at all is refused before its body
    is read (the ``session_cookie``, when named, counts as a key: the gateway's console)."""
    app = FastAPI(title=f"hivemind-{service}", version=version, lifespan=lifespan)
    app.state.service = service
    app.state.ready_checks = {}
    app.state.starting = True
    app.state.scrape_samplers = []
    wires = RouteWires(app)  # each route's error format, as its router declares it
    install_error_handlers(app, wires=wires)
    # body caps inside the request context, so a 413 has a request id and is counted
    if keyed_paths is not None:
        # inside the body cap (a declared oversize is a 413 first), before anything reads the
        # body: a request with no key at all gets its 401 without one byte of it read
        app.add_middleware(
            CredentialsRequiredMiddleware,
            guarded=keyed_paths,
            wires=wires,
            session_cookie=session_cookie,
        )
    app.add_middleware(BodyLimitMiddleware, limits=body_limits, wires=wires)
    app.add_middleware(RequestContextMiddleware, service=service)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service, "version": version}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, ReadyCheck] = request.app.state.ready_checks
        if request.app.state.starting:
            return JSONResponse(
                {"status": "unavailable", "reason": "starting", "checks": {}}, status_code=503
            )
        ok, results = await run_ready_checks(checks)
        if ok:
            return JSONResponse({"status": "ok", "checks": results})
        failing = {k: v for k, v in results.items() if v != "ok"}
        reason = "; ".join(f"{k}: {v}" for k, v in failing.items())
        return JSONResponse(
            {"status": "unavailable", "reason": reason, "checks": results}, status_code=503
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        await sample_at_scrape(request.app)
        return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return app


async def sample_at_scrape(app: FastAPI) -> None:
    """Refresh the scrape-time gauges: readiness, then what the lifespan registered
    (``app.state.scrape_samplers``: Redis health, data-dir disk)."""
    state = app.state
    ready = False
    if not state.starting:
        ready, _ = await run_ready_checks(state.ready_checks)
    SERVICE_READY.labels(state.service).set(1 if ready else 0)
    await run_samplers(state.scrape_samplers)


def mark_started(app: FastAPI) -> None:
    """Call at the end of a lifespan's start-up: /readyz now runs the checks (and a served
    process freezes what start-up built out of later GC passes)."""
    app.state.starting = False
    if getattr(app.state, "freeze_gc", False):
        freeze_after_start()


def metrics_text() -> bytes:
    """This process' metrics; every worker's, summed, when the service runs several."""
    shared = os.environ.get(MULTIPROC_ENV)
    if not shared:
        return generate_latest()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=shared)
    return generate_latest(registry)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exit_with_parent() -> None:
    """A worker process is sent SIGTERM when its supervising process dies, however it died
    (Linux); a killed supervisor leaves no worker holding the port."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def served(app: FastAPI) -> FastAPI:
    """An app as a served process runs it: GC pauses timed, the heap frozen after start-up
    (tests build apps without this: one test process holds many)."""
    watch_gc_pauses()
    app.state.freeze_gc = True
    return app


def serve(
    create_app: Callable[[Any], FastAPI],
    settings: Any,
    *,
    workers: int = 1,
    worker_app: str | None = None,
) -> None:
    """Run a service in the foreground: logging from settings, then uvicorn on its port.

    ``workers`` > 1 runs that many processes on the one port, each with its own listening
    socket (``hivemind_common.workers``: the kernel spreads connections over them);
    each builds its app by ``worker_app``, the import path of a factory that takes no
    arguments and reads the settings itself. Their metrics are kept in files under the data
    dir so that ``/metrics`` answers for all of them (Prometheus' multiprocess mode).
    """
    import uvicorn

    from hivemind_common.observability import configure_logging

    configure_logging(settings.log_level, json_lines=settings.log_json)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.resolved_port(),
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1 and worker_app is not None:
        shared = settings.data_dir / "run" / f"metrics-{settings.service_name}-{common['port']}"
        shutil.rmtree(shared, ignore_errors=True)  # files of an earlier run would add up
        shared.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(shared)  # before any worker imports prometheus_client
        log.info("%s: %d worker processes", settings.service_name, workers)
        from hivemind_common.workers import run_workers

        run_workers(uvicorn.Config(worker_app, factory=True, workers=workers, **common))
        return
    uvicorn.run(served(create_app(settings)), **common)
    log_gc_pauses()
