"""Logging set-up shared by every entry point."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at the given level, one line per record."""
    logging.basicConfig(level=level, format=FORMAT, force=True)
