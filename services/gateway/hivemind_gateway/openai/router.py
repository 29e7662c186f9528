"""The gateway's OpenAI-compatible routes.

Auth: every route needs an API key; ``read`` is enough, except that a chat which asks for
capture (``hivemind.capture: true``) needs ``write``. A tenant-wide capture switch captures the
chats of ``write`` and ``admin`` keys only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from hivemind_common.auth import ReadPrincipal
from hivemind_common.errors import Invalid
from hivemind_common.wire import OpenAIRoute
from hivemind_gateway.deps import StateDep
from hivemind_gateway.openai import service
from hivemind_gateway.openai.schemas import ChatBody, CompletionBody, EmbeddingBody
from hivemind_gateway.openai.served import ServedModels
from hivemind_gateway.openai.upstream import post_raw

router = APIRouter(tags=["openai"], route_class=OpenAIRoute)
# registered after the native /v1/models/versions routes, so it never shadows them
model_router = APIRouter(tags=["openai"], route_class=OpenAIRoute)


def _public_card(card: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "object", "created", "owned_by", "version", "aliases", "n_ctx", "fim")
    return {k: card[k] for k in keep if k in card}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatBody, principal: ReadPrincipal, state: StateDep) -> Response:
    payload = body.model_dump(exclude_unset=True)
    return await service.chat_completion(state, principal, payload)


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionBody, principal: ReadPrincipal, state: StateDep) -> Response:
    payload = body.model_dump(exclude_unset=True)
    return await service.text_completion(state, principal, payload)


@router.get("/v1/models")
async def list_models(principal: ReadPrincipal, state: StateDep) -> dict[str, Any]:
    served: ServedModels = state.served_models
    cards = await served.cards(fresh=True)
    data = [_public_card(c) for c in cards]
    rules = served.rules
    data.append(
        {
            "id": "auto",
            "object": "model",
            "created": 0,
            "owned_by": "hivemind",
            "routes_to": {"small": rules.small, "large": rules.large},
        }
    )
    return {"object": "list", "data": data}


@model_router.get("/v1/models/{model_id}")
async def get_model(model_id: str, principal: ReadPrincipal, state: StateDep) -> dict[str, Any]:
    served: ServedModels = state.served_models
    return _public_card(await served.resolve(model_id))


@router.post("/v1/embeddings", response_model=None)
async def embeddings(body: EmbeddingBody, principal: ReadPrincipal, state: StateDep) -> Response:
    if not isinstance(body.input, str) and body.input and not isinstance(body.input[0], str):
        # token ids are the caller's tokenizer's (tiktoken's, for OpenAI clients): they cannot
        # be read back into text here (LangChain: check_embedding_ctx_length=False sends text)
        raise Invalid(
            "input as token ids is not supported: send the text (a string or a list of strings)",
            param="input",
        )
    # passed on as it came: re-encoding hundreds of floats a row costs more than the call
    raw, _ = await post_raw(
        state.embedding_http, "embedding", "/v1/embeddings", body.model_dump(exclude_unset=True)
    )
    return Response(raw, media_type="application/json")
