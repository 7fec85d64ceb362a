"""POST /v1/events: validate, fix the event's window at receipt, queue the job, answer 202."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from services.api.deps import INGEST, ContextDep
from services.kernel.contracts import TRANSACTION_ID_PATTERN, EventAccepted, EventIn

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[INGEST])


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        413: {"description": "Body too large"},
        422: {"description": "Invalid event"},
        503: {"description": "Overloaded or a store is down; retry later"},
    },
)
async def post_event(
    event: EventIn,
    context: ContextDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(pattern=TRANSACTION_ID_PATTERN, max_length=128)
    ] = None,
) -> EventAccepted:
    """Accept an event: its frames are pinned now, the recording is written by a worker."""
    with context.metrics.accept_seconds.time():
        accepted = await context.ingest.accept(event, idempotency_key or event.transaction_id)
    if accepted.duplicate:
        context.metrics.duplicates.inc()
    else:
        context.metrics.accepted.labels(accepted.camera_id).inc()
    response.headers["Location"] = accepted.answer.status_url
    return accepted.answer
