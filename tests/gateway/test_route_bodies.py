"""Every request body of every gateway route goes through the one text rule (InputModel)."""

from __future__ import annotations

import types
import typing

from fastapi.routing import APIRoute
from pydantic import BaseModel

from hivemind_common.text import InputModel

# bodies whose parts are checked one by one, each as an InputModel, so one bad part fails alone
CHECKED_PER_ITEM = {"MemoriesBatch"}


def _models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    return []


def _api_routes(routes: typing.Iterable[object]) -> typing.Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # an included router
        if inner is not None:
            yield from _api_routes(inner.routes)


def test_every_route_body_is_an_input_model(tmp_path) -> None:
    from hivemind_gateway.app import create_app
    from hivemind_gateway.settings import GatewaySettings

    app = create_app(GatewaySettings(internal_token="unused", data_dir=tmp_path))
    bodies: dict[str, list[str]] = {}
    for route in _api_routes(app.routes):
        for param in route.dependant.body_params:
            for model in _models(param.field_info.annotation):
                bodies.setdefault(model.__name__, []).append(route.path)
                if model.__name__ not in CHECKED_PER_ITEM:
                    assert issubclass(model, InputModel), f"{route.path}: {model.__name__}"
    assert {"ChatBody", "MessagesBody", "FactCreate", "SampleCreate"} <= set(bodies)
