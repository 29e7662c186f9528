"""Request metrics, request ids and structured logging shared by every service."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

HTTP_REQUESTS = Counter(
    "hivemind_http_requests_total",
    "HTTP requests handled, by route template and status class.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "hivemind_http_request_duration_seconds",
    "Time to the end of the response, by route template.",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # an incoming id we keep
_UNTRACKED = frozenset({"/metrics", "/healthz"})


class RequestContextMiddleware:
    """Pure ASGI middleware: request id in and out, count and latency per route template."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if REQUEST_ID_OK.fullmatch(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            request_id_var.reset(token)
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template not in _UNTRACKED:
                method = scope.get("method", "GET")
                HTTP_REQUESTS.labels(
                    self.service, method, template, f"{status['code'] // 100}xx"
                ).inc()
                HTTP_LATENCY.labels(self.service, method, template).observe(
                    time.perf_counter() - start
                )


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the request id."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Set up the root logger once per process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
