"""API entry point: serve the app with uvicorn until SIGTERM."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from services.kernel.logconfig import configure_logging
from services.kernel.settings import Settings, load_settings, settings_env
from services.runtime.lifecycle import Lifecycle, shared_metrics


def main(settings: Settings) -> None:
    """Serve the API on settings.host:settings.port; uvicorn handles SIGTERM gracefully."""
    configure_logging(settings.log_level)
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]  # uvicorn.run's options are typed one by one
        return
    # Worker processes build their own app from SCO_* variables, so hand them these settings
    # there; their metrics meet in a shared directory, removed when they stop.
    os.environ.update(settings_env(settings))
    with Lifecycle("api", signals=False) as life:  # uvicorn handles the signals
        life.enter(shared_metrics("api"))
        uvicorn.run(
            "services.api.main:app_from_environment",
            factory=True,
            workers=settings.api_workers,
            **options,  # type: ignore[arg-type]  # as above
        )


def app_from_environment() -> FastAPI:
    """The app of one of several API processes, its settings read from SCO_* variables."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
