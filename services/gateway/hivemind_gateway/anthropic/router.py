"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``) on the chat pipeline.

Keys come as ``x-api-key`` or ``Authorization: Bearer``; ``anthropic-version`` and
``anthropic-beta`` headers are accepted and not needed. ``claude-*`` model names are served by
the local model of the ``claude_model`` setting (default: the ``auto`` route); other names are
local model names. Errors answer in Anthropic's envelope (see ``hivemind_common.error_handlers``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from hivemind_common.auth import KeyHeaderPrincipal
from hivemind_common.streams import ClosingStream
from hivemind_common.wire import AnthropicRoute
from hivemind_gateway.anthropic.convert import chat_payload, message_from_events
from hivemind_gateway.anthropic.schemas import CountTokensBody, MessagesBody
from hivemind_gateway.anthropic.stream import message_events
from hivemind_gateway.deps import StateDep
from hivemind_gateway.openai import service
from hivemind_gateway.openai.events import answer_events, chat_events
from hivemind_gateway.openai.served import ServedModels
from hivemind_gateway.openai.upstream import post_json
from hivemind_gateway.state import GatewayState

router = APIRouter(tags=["anthropic"], route_class=AnthropicRoute)


def local_model(state: GatewayState, name: str) -> str:
    """The local model a Messages ``model`` is served by."""
    return str(state.settings.claude_model) if name.startswith("claude") else name


@router.post("/v1/messages", response_model=None)
async def create_message(
    body: MessagesBody, principal: KeyHeaderPrincipal, state: StateDep
) -> Response:
    raw = body.model_dump(exclude_unset=True)
    payload = chat_payload(raw, local_model(state, body.model))
    out = await service.run_chat(state, principal, payload, api="messages")
    if out.stream is None:
        message = message_from_events(answer_events(out.answer()), model=body.model)
        return JSONResponse(message, headers=out.headers)
    return ClosingStream(
        message_events(chat_events(out.stream), model=body.model),
        media_type="text/event-stream",
        headers=out.headers,
        on_close=out.close,
    )


@router.post("/v1/messages/count_tokens")
async def count_tokens(
    body: CountTokensBody, principal: KeyHeaderPrincipal, state: StateDep
) -> dict[str, int]:
    """Prompt tokens of a Messages request, by the served model's own template and tokenizer,
    with the retrieved context a chat would carry (its max_tokens unknown here: 256 reserved)."""
    payload = chat_payload(body.model_dump(exclude_unset=True), local_model(state, body.model))
    served: ServedModels = state.served_models
    chars = service.prompt_chars(payload["messages"])  # as a chat routes and budgets it
    card = await served.resolve(payload["model"], prompt_chars=chars)
    # counted as the request would be sent: with what retrieval would inject into it
    messages = await service.with_retrieval(state, principal, payload, card, chars)
    request = {"model": card["id"], "messages": messages}
    if payload.get("tools") and payload.get("tool_choice") != "none":
        request["tools"] = payload["tools"]
    data, _ = await post_json(state.inference_http, "inference", "/tokenize", request)
    return {"input_tokens": int(data["count"])}
