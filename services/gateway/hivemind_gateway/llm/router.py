"""The LLM helper routes of SPEC.md: thin templates over the chat pipeline.

Native routes (problem+json errors). ``read`` keys may call them; capture follows the tenant's
switch as for chats.
"""

from __future__ import annotations

from fastapi import APIRouter

from hivemind_common.auth import ReadPrincipal
from hivemind_gateway.deps import StateDep
from hivemind_gateway.llm import service
from hivemind_gateway.llm.schemas import (
    CodeAssistRequest,
    CompleteRequest,
    GenerateRequest,
    HelperPublic,
)

router = APIRouter(prefix="/v1/llm", tags=["llm"])


@router.post("/generate", response_model=HelperPublic)
async def generate(
    body: GenerateRequest, principal: ReadPrincipal, state: StateDep
) -> HelperPublic:
    return await service.generate(state, principal, body)


@router.post("/code-assist", response_model=HelperPublic)
async def code_assist(
    body: CodeAssistRequest, principal: ReadPrincipal, state: StateDep
) -> HelperPublic:
    return await service.code_assist(state, principal, body)


@router.post("/complete", response_model=HelperPublic)
async def complete(
    body: CompleteRequest, principal: ReadPrincipal, state: StateDep
) -> HelperPublic:
    return await service.complete(state, principal, body)
