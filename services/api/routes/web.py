"""The recordings page at `/`: one server-rendered shell (Jinja2) and a little plain
JavaScript that reads the JSON API with the read key. The shell and its static files hold
no data, so they need no key; every recording, frame and camera comes from /v1."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.api.deps import ContextDep

WEB = Path(__file__).resolve().parent.parent / "web"
templates = Jinja2Templates(directory=WEB / "templates")
router = APIRouter(tags=["page"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request, context: ContextDep) -> HTMLResponse:
    """The recordings list, a recording's frames, the cameras: all on one page."""
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "needs_key": context.settings.has_keys,
            "cameras": context.settings.camera_ids,
        },
        headers={"Cache-Control": "no-store"},
    )


def mount_page(app: FastAPI) -> None:
    """Serve the page at / and its script and style under /ui."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=WEB / "static"), name="ui")
