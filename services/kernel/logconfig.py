"""Logging set-up shared by every entry point."""

from __future__ import annotations

import logging

from services.kernel.redact import MaskCredentials

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at the given level, one line per record, URL passwords masked."""
    logging.basicConfig(level=level, format=FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskCredentials())
