"""`celery -A services.worker.app worker|flower`: the app, built from the environment on access.

Nothing is built at import time; Celery's `-A` looks up `app`, and this module builds it then.
"""

from __future__ import annotations

from functools import cache

from celery import Celery

from services.kernel.settings import load_settings
from services.worker.main import build_app


@cache
def _app() -> Celery:
    return build_app(load_settings())


def __getattr__(name: str) -> Celery:
    if name == "app":
        return _app()
    raise AttributeError(name)
