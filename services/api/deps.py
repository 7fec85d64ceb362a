"""Dependency aliases for the routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.context import Context


async def get_context(request: Request) -> Context:
    """The app's context, built at start-up.

    This and `require_api_key` are `async def` though they never wait: FastAPI runs a plain
    `def` dependency in its thread pool, a thread hop per dependency per request.
    """
    context: Context = request.app.state.context
    return context


ContextDep = Annotated[Context, Depends(get_context)]

bearer = HTTPBearer(auto_error=False, description="SCO_API_KEY, when the API has one.")


async def require_api_key(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Refuse a request without the API key, when one is configured; constant-time compare."""
    expected = context.settings.api_key
    if expected is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
