"""Which error format a route speaks, as its router declares it.

A router that answers in a foreign API's shape says so once, with its route class::

    router = APIRouter(route_class=OpenAIRoute)      # OpenAI's {"error": {...}} envelope
    router = APIRouter(route_class=AnthropicRoute)   # Anthropic's {"type": "error", ...}

Every other route is native (RFC 9457 problem+json). :class:`RouteWires` reads the declarations
from the app's routes, so the error handlers and the layers that answer before routing (body
caps, missing credentials) pick the same format the route itself would; ``libs/common`` holds
no service's route table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar, Literal

from fastapi import FastAPI, routing
from fastapi.routing import APIRoute
from starlette.routing import compile_path

Wire = Literal["native", "openai", "anthropic"]


class NativeRoute(APIRoute):
    """A route that answers errors as problem+json (FastAPI's default route class is too)."""

    wire: ClassVar[Wire] = "native"


class OpenAIRoute(APIRoute):
    """A route of an OpenAI-compatible API: OpenAI's error envelope, 400 for a bad body."""

    wire: ClassVar[Wire] = "openai"


class AnthropicRoute(APIRoute):
    """A route of Anthropic's Messages API: Anthropic's error envelope, 400 for a bad body."""

    wire: ClassVar[Wire] = "anthropic"


def _api_routes(app: FastAPI) -> Iterator[tuple[APIRoute, str, set[str]]]:
    """Every API route of the app with its full path, in the order the router tries them."""
    walk = getattr(routing, "iter_route_contexts", None)
    if walk is None:  # FastAPI before 0.16x flattened included routers into app.routes
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route, route.path, set(route.methods or ())
        return
    for context in walk(app.routes):  # included routers stay nested: walk them in order
        route, path = context.original_route, context.path
        if isinstance(route, APIRoute) and path:
            yield route, path, set(context.methods or ())


def route_wire(route: APIRoute) -> Wire:
    """The format a route declares (its class's ``wire``); native when it declares none."""
    wire: Wire = getattr(route, "wire", "native")
    return wire


class RouteWires:
    """``wires(path, method)``: the format of the route a request goes to, matched the way the
    router matches (the first route whose path and method fit, else the first whose path fits);
    "native" for a path no route takes. The table is read from the app on first use, once every
    router is included."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], frozenset[str], Wire]] | None = None

    def _routes(self) -> list[tuple[re.Pattern[str], frozenset[str], Wire]]:
        if self._table is None:
            table: list[tuple[re.Pattern[str], frozenset[str], Wire]] = []
            for route, path, methods in _api_routes(self.app):
                regex, _, _ = compile_path(path)
                table.append((regex, frozenset(methods), route_wire(route)))
            self._table = table
        return self._table

    def __call__(self, path: str, method: str | None = None) -> Wire:
        partial: Wire | None = None
        for regex, methods, wire in self._routes():
            if regex.match(path):
                if method is None or method in methods:
                    return wire
                partial = partial or wire
        return partial or "native"

    def foreign(self, path: str, method: str | None = None) -> bool:
        """True when the route speaks another API's envelope (its bad bodies are 400s)."""
        return self(path, method) != "native"


__all__ = ["AnthropicRoute", "NativeRoute", "OpenAIRoute", "RouteWires", "Wire", "route_wire"]
