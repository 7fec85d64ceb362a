"""API entry point: serve the app with uvicorn until SIGTERM."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from services.common.logconfig import configure_logging
from services.common.settings import Settings


def main(settings: Settings) -> None:
    """Serve the API on settings.host:settings.port; uvicorn handles SIGTERM gracefully."""
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
