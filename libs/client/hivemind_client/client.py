"""The sync :class:`Client` and the async :class:`AsyncClient` of the native API.

Both run the calls described in :mod:`hivemind_client.calls`. A failed call is retried only
when sending it again is safe: an idempotent call (GET, PUT, the document upsert) after a
transport error, a 502/503/504 or a 429 (after its ``Retry-After``); a POST that may have
reached the server is never sent twice. Errors are raised as :mod:`hivemind_client.errors`.
"""

# The methods are typed by inference from the calls they run (``put_fact = _Sync(calls.put_fact)``
# is ``(key, value, tags) -> Fact``); a checker that cannot resolve this package's own imports
# sees ``Any`` there and asks for annotations instead, hence:
# mypy: disable-error-code="var-annotated,type-var"
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from hivemind_client import calls
from hivemind_client.calls import Call, parse
from hivemind_client.errors import (
    BadRequest,
    HivemindError,
    RateLimited,
    TransportError,
    from_response,
)

DEFAULT_URL = "http://127.0.0.1:8090"
RETRY_STATUSES = frozenset({429, 502, 503, 504})

P = ParamSpec("P")
T = TypeVar("T")


def _settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    url = (base_url or os.environ.get("HIVEMIND_GATEWAY_URL") or DEFAULT_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("HIVEMIND_API_KEY")
    headers = {"Accept": "application/json", "User-Agent": "hivemind-client/0.1"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return url, headers


class _Policy:
    """When to try a call again, and how long to wait first."""

    def __init__(self, retries: int, backoff_s: float) -> None:
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must not be negative")
        self.retries = retries
        self.backoff_s = backoff_s

    def delay(self, call: Call[Any], attempt: int, error: HivemindError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if not call.idempotent or attempt > self.retries:
            return None
        if isinstance(error, TransportError) or error.status in RETRY_STATUSES:
            if isinstance(error, RateLimited) and error.retry_after is not None:
                return min(error.retry_after, 30.0)
            return self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
        return None


def _request(call: Call[Any]) -> dict[str, Any]:
    """httpx's arguments; a body that is not JSON (NaN, a lone surrogate) is a BadRequest here,
    before anything is sent, not an encoder's exception."""
    kw: dict[str, Any] = {"params": call.params or None}
    if call.json is not None:
        try:
            text = json.dumps(call.json, ensure_ascii=False, allow_nan=False)
            kw["content"] = text.encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise BadRequest(f"the request cannot be sent as JSON: {exc}") from exc
        kw["headers"] = {"Content-Type": "application/json"}
    return kw


def _answer(call: Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        raise from_response(response)
    if response.status_code == 204 or call.answer is None:
        return None  # type: ignore[return-value]
    try:
        payload = response.json()
    except ValueError as exc:
        raise TransportError(f"the gateway sent no JSON ({response.status_code})") from exc
    try:
        return parse(call, payload)
    except ValueError as exc:  # pydantic's ValidationError: not the answer this client knows
        raise HivemindError(f"the gateway's answer has an unexpected shape: {exc}") from exc


class _Sync(Generic[P, T]):
    """A method of :class:`Client` that runs the call ``build`` describes."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> _Sync[P, T]: ...
    @overload
    def __get__(self, obj: Client, owner: type) -> Callable[P, T]: ...
    def __get__(self, obj: Client | None, owner: type) -> Any:
        if obj is None:
            return self
        build = self.build

        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return obj.run(build(*args, **kwargs))

        return method


class _Async(Generic[P, T]):
    """A method of :class:`AsyncClient` that runs the call ``build`` describes."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build

    @overload
    def __get__(self, obj: None, owner: type) -> _Async[P, T]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, obj: AsyncClient | None, owner: type) -> Any:
        if obj is None:
            return self
        build = self.build

        def method(*args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
            return obj.run(build(*args, **kwargs))

        return method


class Client:
    """Blocking client: ``Client(url, key)``; the defaults come from ``HIVEMIND_GATEWAY_URL``
    and ``HIVEMIND_API_KEY``. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url, headers = _settings(base_url, api_key)
        self._policy = _Policy(retries, backoff_s)
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout,
                                  transport=transport)  # fmt: skip

    def run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(call.method, call.path, **_request(call))
                return _answer(call, response)
            except httpx.HTTPError as exc:
                error: HivemindError = TransportError(f"{type(exc).__name__}: {exc}")
                cause: BaseException = exc
            except HivemindError as exc:
                error, cause = exc, exc
            wait = self._policy.delay(call, attempt, error)
            if wait is None:
                if error is cause:
                    raise error
                raise error from cause
            time.sleep(wait)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    put_fact = _Sync(calls.put_fact)
    get_fact = _Sync(calls.get_fact)
    delete_fact = _Sync(calls.delete_fact)
    list_facts = _Sync(calls.list_facts)
    search_facts = _Sync(calls.search_facts)
    create_session = _Sync(calls.create_session)
    get_session = _Sync(calls.get_session)
    list_sessions = _Sync(calls.list_sessions)
    add_memory = _Sync(calls.add_memory)
    get_memory = _Sync(calls.get_memory)
    delete_memory = _Sync(calls.delete_memory)
    list_memories = _Sync(calls.list_memories)
    search_memories = _Sync(calls.search_memories)
    put_doc = _Sync(calls.put_doc)
    put_docs = _Sync(calls.put_docs)
    list_docs = _Sync(calls.list_docs)
    get_doc = _Sync(calls.get_doc)
    delete_doc = _Sync(calls.delete_doc)
    search_docs = _Sync(calls.search_docs)
    tokenize = _Sync(calls.tokenize)
    chunk = _Sync(calls.chunk)
    rag_context = _Sync(calls.rag_context)
    rag_stats = _Sync(calls.rag_stats)


class AsyncClient:
    """The same API for asyncio: every method returns an awaitable."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url, headers = _settings(base_url, api_key)
        self._policy = _Policy(retries, backoff_s)
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout,
                                       transport=transport)  # fmt: skip

    async def run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(call.method, call.path, **_request(call))
                return _answer(call, response)
            except httpx.HTTPError as exc:
                error: HivemindError = TransportError(f"{type(exc).__name__}: {exc}")
                cause: BaseException = exc
            except HivemindError as exc:
                error, cause = exc, exc
            wait = self._policy.delay(call, attempt, error)
            if wait is None:
                if error is cause:
                    raise error
                raise error from cause
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    put_fact = _Async(calls.put_fact)
    get_fact = _Async(calls.get_fact)
    delete_fact = _Async(calls.delete_fact)
    list_facts = _Async(calls.list_facts)
    search_facts = _Async(calls.search_facts)
    create_session = _Async(calls.create_session)
    get_session = _Async(calls.get_session)
    list_sessions = _Async(calls.list_sessions)
    add_memory = _Async(calls.add_memory)
    get_memory = _Async(calls.get_memory)
    delete_memory = _Async(calls.delete_memory)
    list_memories = _Async(calls.list_memories)
    search_memories = _Async(calls.search_memories)
    put_doc = _Async(calls.put_doc)
    put_docs = _Async(calls.put_docs)
    list_docs = _Async(calls.list_docs)
    get_doc = _Async(calls.get_doc)
    delete_doc = _Async(calls.delete_doc)
    search_docs = _Async(calls.search_docs)
    tokenize = _Async(calls.tokenize)
    chunk = _Async(calls.chunk)
    rag_context = _Async(calls.rag_context)
    rag_stats = _Async(calls.rag_stats)
