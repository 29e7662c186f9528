"""LLM helpers as templates over the chat pipeline (same routing, retrieval, cache, capture)."""

from __future__ import annotations

import json
from typing import Any

from hivemind_common.auth import Principal
from hivemind_gateway.llm.schemas import (
    CodeAssistRequest,
    CompleteRequest,
    GenerateRequest,
    HelperOptions,
    HelperPublic,
)
from hivemind_gateway.openai import service as chat_service
from hivemind_gateway.openai.upstream import VERSION_HEADER, UpstreamRefused
from hivemind_gateway.state import GatewayState

MODE_PROMPTS = {
    "chat": "You are a helpful assistant for software engineers.",
    "concise": "Answer in as few words as correctness allows. No preamble.",
    "detailed": "Answer thoroughly, step by step, with examples where they help.",
    "creative": "Be inventive and offer more than one idea.",
    "json": "Answer with one JSON object and nothing else.",
}
MODE_TEMPERATURE = {"creative": 0.9}

TASK_PROMPTS = {
    "explain": "Explain what this code does, briefly and precisely.",
    "review": "Review this code: list bugs, risks and improvements, most important first.",
    "fix": "Find the bug in this code and give the corrected code.",
    "refactor": "Refactor this code for clarity without changing its behaviour.",
    "document": "Write docstrings and comments for this code.",
    "test": "Write unit tests for this code.",
    "complete": "Complete this code.",
}


async def _chat(
    state: GatewayState,
    principal: Principal,
    opts: HelperOptions,
    messages: list[dict[str, Any]],
    *,
    task: str,
    extra: dict[str, Any] | None = None,
) -> HelperPublic:
    payload: dict[str, Any] = {
        "model": opts.model,
        "messages": messages,
        "max_tokens": opts.max_tokens,
        "temperature": opts.temperature,
        "hivemind": {"rag": opts.rag, "session_id": opts.session_id, "task": task},
        **(extra or {}),
    }
    resp = await chat_service.chat_completion(state, principal, payload)
    body = json.loads(bytes(resp.body))  # non-stream: a JSONResponse
    choice = (body.get("choices") or [{}])[0]
    return HelperPublic(
        text=(choice.get("message") or {}).get("content") or "",
        model=body.get("model", opts.model),
        version=resp.headers.get(VERSION_HEADER),
        finish_reason=choice.get("finish_reason"),
        usage=body.get("usage"),
    )


async def generate(state: GatewayState, principal: Principal, req: GenerateRequest) -> HelperPublic:
    """``POST /v1/llm/generate``: a prompt under a mode's system prompt."""
    opts = req
    if req.mode in MODE_TEMPERATURE and "temperature" not in req.model_fields_set:
        opts = req.model_copy(update={"temperature": MODE_TEMPERATURE[req.mode]})
    messages = [
        {"role": "system", "content": MODE_PROMPTS[req.mode]},
        {"role": "user", "content": req.prompt},
    ]
    extra = {"response_format": {"type": "json_object"}} if req.mode == "json" else None
    return await _chat(state, principal, opts, messages, task=f"generate:{req.mode}", extra=extra)


async def code_assist(
    state: GatewayState, principal: Principal, req: CodeAssistRequest
) -> HelperPublic:
    """``POST /v1/llm/code-assist``: a task (explain, review, fix, ... or free text) on code."""
    instruction = TASK_PROMPTS.get(req.task, req.task)
    fence = req.language.lower().replace(" ", "")
    messages = [
        {"role": "system", "content": "You are an expert programmer. Be exact."},
        {"role": "user", "content": f"{instruction}\n\n```{fence}\n{req.code}\n```"},
    ]
    return await _chat(state, principal, req, messages, task="code-assist")


async def complete(state: GatewayState, principal: Principal, req: CompleteRequest) -> HelperPublic:
    """``POST /v1/llm/complete``: fill-in-the-middle when the model can, else an instruction."""
    if req.suffix:
        payload = {
            "model": req.model if req.model != "auto" else "default",
            "prompt": req.prefix,
            "suffix": req.suffix,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
        }
        try:
            resp = await chat_service.text_completion(state, principal, payload)
        except UpstreamRefused as exc:
            if exc.code != "fim_not_supported":
                raise
        else:
            body = json.loads(bytes(resp.body))
            choice = (body.get("choices") or [{}])[0]
            return HelperPublic(
                text=choice.get("text", ""),
                model=body.get("model", req.model),
                version=resp.headers.get(VERSION_HEADER),
                finish_reason=choice.get("finish_reason"),
                method="fim",
                usage=body.get("usage"),
            )
    fence = req.language.lower().replace(" ", "")
    if req.suffix:
        ask = (
            "Write only the code that belongs at <CURSOR>, nothing else.\n\n"
            f"```{fence}\n{req.prefix}<CURSOR>{req.suffix}\n```"
        )
    else:
        ask = f"Continue this code. Write only the continuation.\n\n```{fence}\n{req.prefix}\n```"
    messages = [
        {"role": "system", "content": "You complete code. Output code only."},
        {"role": "user", "content": ask},
    ]
    return await _chat(state, principal, req, messages, task="complete")
