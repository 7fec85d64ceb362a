"""API entry point: serve the app with uvicorn until SIGTERM; or on a thread of `up`."""

from __future__ import annotations

import logging
import os
import threading

import uvicorn
from fastapi import FastAPI

from services.api.app import create_app
from services.kernel.logconfig import configure_logging
from services.kernel.settings import (
    Settings,
    load_settings,
    pasteable_url,
    secured,
    settings_env,
)
from services.runtime.lifecycle import Lifecycle, shared_metrics

log = logging.getLogger(__name__)


def uvicorn_options(settings: Settings) -> dict[str, str | int | bool]:
    """Where and how uvicorn serves the API."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }


def main(settings: Settings) -> None:
    """Serve the API on settings.host:settings.port; uvicorn handles SIGTERM gracefully."""
    configure_logging(settings.log_level)
    settings = announce_exposure(settings)
    options = uvicorn_options(settings)
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


def announce_exposure(settings: Settings) -> Settings:
    """Never listen beyond loopback without a key: make one and print it once, with the
    curl line that uses it; or, with SCO_ALLOW_NO_AUTH, warn at every start."""
    settings, generated = secured(settings)
    url = pasteable_url(settings)
    if generated is not None:
        log.warning(
            "the API listens on %s and no key is set: every /v1 route needs this key, "
            "made for this run (set SCO_API_KEY, or SCO_INGEST_KEYS / SCO_READ_KEYS, to "
            "choose your own):\n\n    %s\n\n    curl -H 'Authorization: Bearer %s' %s/v1/cameras\n",
            settings.host, generated, generated, url,
        )  # fmt: skip
    elif not settings.has_keys and settings.allow_no_auth:
        log.warning(
            "the API listens on %s with no key (SCO_ALLOW_NO_AUTH=true): anyone who reaches "
            "%s can post events and read every recording",
            settings.host, url,
        )  # fmt: skip
    return settings


class ApiThread:
    """One API process's work on a thread of this one: what `up` runs unless
    SCO_API_WORKERS asks for several processes (an interpreter fewer, ~55 MB;
    docs/benchmarks.md). uvicorn leaves the signals to the main thread off it."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(create_app(settings), **uvicorn_options(settings))  # type: ignore[arg-type]  # as above
        self._server = uvicorn.Server(config)
        # A port in use ends the server (and the thread) with the reason logged.
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self) -> ApiThread:
        """Start serving."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether it still serves (or is starting)."""
        return self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        """Finish the requests in flight, as SIGTERM makes uvicorn do, and stop."""
        self._server.should_exit = True
        self._thread.join(timeout)


def app_from_environment() -> FastAPI:
    """The app of one of several API processes, its settings read from SCO_* variables."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
