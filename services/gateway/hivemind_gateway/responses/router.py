"""OpenAI's Responses API (``POST /v1/responses``), stateless, on the chat pipeline."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field

from hivemind_common.auth import ReadPrincipal
from hivemind_common.streams import ClosingStream
from hivemind_common.text import (
    MAX_CHAT_MESSAGES,
    MAX_MESSAGE_CHARS,
    ConversationInputModel,
)
from hivemind_common.wire import OpenAIRoute
from hivemind_gateway.deps import StateDep
from hivemind_gateway.openai import service
from hivemind_gateway.openai.events import answer_events, chat_events
from hivemind_gateway.openai.schemas import HivemindOptions
from hivemind_gateway.responses.convert import chat_payload, response_from_events
from hivemind_gateway.responses.stream import response_events

router = APIRouter(tags=["openai"], route_class=OpenAIRoute)


class ResponseBody(ConversationInputModel):
    """Every string in it (passed-through fields too) is checked as text; control characters in
    the input and instructions are cleaned (see ConversationInputModel)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    input: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[dict[str, Any]], Field(max_length=MAX_CHAT_MESSAGES)]
    )
    instructions: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    text: dict[str, Any] | None = None
    hivemind: HivemindOptions | None = None


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: ResponseBody, principal: ReadPrincipal, state: StateDep
) -> Response:
    raw = body.model_dump(exclude_unset=True)
    out = await service.run_chat(state, principal, chat_payload(raw), api="responses")
    if out.stream is None:
        return JSONResponse(
            response_from_events(raw, answer_events(out.answer())), headers=out.headers
        )
    return ClosingStream(
        response_events(chat_events(out.stream), raw),
        media_type="text/event-stream",
        headers=out.headers,
        on_close=out.close,
    )
