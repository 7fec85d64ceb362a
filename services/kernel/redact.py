"""Credentials in URLs (rtsp://user:password@camera/…) never leave the process: every place
that shows a source, an error or a log line shows `user:***@` instead."""

from __future__ import annotations

import logging
import re

_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@")


def mask_credentials(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


class MaskCredentials(logging.Filter):
    """A logging filter that masks URL passwords in each record's message and arguments,
    the safety net behind masking where a source is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_credentials(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
