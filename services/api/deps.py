"""Dependency aliases for the routes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.context import Context
from services.kernel.settings import Settings


async def get_context(request: Request) -> Context:
    """The app's context, built at start-up.

    This and `require_api_key` are `async def` though they never wait: FastAPI runs a plain
    `def` dependency in its thread pool, a thread hop per dependency per request.
    """
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]

bearer = HTTPBearer(
    auto_error=False, description="An API key (SCO_API_KEY, _INGEST_KEYS, _READ_KEYS)."
)

Scope = Literal["ingest", "read"]
ALL_SCOPES = frozenset({"ingest", "read"})


def key_scopes(settings: Settings) -> list[tuple[bytes, frozenset[str]]]:
    """Each configured key and what it may do: SCO_API_KEY everything, an ingest key post
    events (and read their status), a read key read recordings, frames and cameras."""
    granted: dict[bytes, set[str]] = {}
    if settings.api_key is not None:
        granted.setdefault(settings.api_key.get_secret_value().encode(), set()).update(ALL_SCOPES)
    for keys, scope in ((settings.ingest_keys, "ingest"), (settings.read_keys, "read")):
        for key in keys:
            granted.setdefault(key.get_secret_value().encode(), set()).add(scope)
    return [(key, frozenset(scopes)) for key, scopes in granted.items()]


def require(*allowed: Scope) -> Callable[..., Awaitable[None]]:
    """A dependency refusing a request whose key grants none of `allowed` (401 without a
    known key, 403 with a key of another scope); open when no key is configured. Every
    key is compared, in constant time."""

    async def check(
        context: ContextDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not context.keys:
            return
        given = (credentials.credentials if credentials else "").encode()
        granted: frozenset[str] = frozenset()
        for key, scopes in context.keys:
            if hmac.compare_digest(given, key):
                granted = scopes
        if not granted:
            raise HTTPException(
                401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if not granted & set(allowed):
            raise HTTPException(
                403, f"this key may not do this (it needs a {' or '.join(allowed)} key)"
            )

    return check


INGEST = Depends(require("ingest"))
READ = Depends(require("read"))
STATUS = Depends(require("ingest", "read"))  # a recording's status: the cashier system's too
