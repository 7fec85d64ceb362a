"""A staging folder's journal: the window its job records, then each frame written so far.

A job frees each frame from the frame store once its PNG is written and journaled (the pin
moves past it), so a job taken over half way cannot read those frames again: the attempt
that adopts the folder keeps them from here instead. One JSON line each; the first names
the window, as the index listed it when the job began.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from services.kernel.contracts import FrameRecord
from services.stores.framebuffer import Window
from services.stores.storage import StagedRecording

log = logging.getLogger(__name__)

JOURNAL = ".journal"


@dataclass(frozen=True)
class Progress:
    """What an earlier attempt left: its window, and the frames written, in order."""

    window: Window
    written: list[FrameRecord]


def begin(staged: StagedRecording, window: Window) -> None:
    """Start the journal of a job that writes `window`."""
    staged.write(JOURNAL, _header(window))


def note(staged: StagedRecording, record: FrameRecord) -> None:
    """Journal a frame whose PNG is written (fails once another attempt took the folder)."""
    staged.append(JOURNAL, _line(record))


def resume(staged: StagedRecording) -> Progress | None:
    """What the attempt whose folder this was got done, checked: its window, and the leading
    frames whose files are there with their journaled SHA-256. Every other file is removed
    and the journal rewritten to match. None if it left no journal (nothing to keep)."""
    try:
        lines = (staged.path / JOURNAL).read_bytes().splitlines()
        header = json.loads(lines[0])
        window = Window(before=list(header["before"]), after=list(header["after"]))
    except (FileNotFoundError, IndexError, ValueError, KeyError, TypeError):
        staged.keep_only(set())
        return None
    written: list[FrameRecord] = []
    for line, stream_id in zip(lines[1:], window.ids, strict=False):
        record = _checked(staged.path, line, stream_id, len(written) + 1)
        if record is None:
            break
        written.append(record)
    staged.keep_only({JOURNAL, *(record.file for record in written)})
    staged.replace(JOURNAL, _header(window) + b"".join(_line(record) for record in written))
    log.info("kept %d of %d frames an earlier attempt wrote", len(written), len(lines) - 1)
    return Progress(window, written)


def frame_name(number: int) -> str:
    """The file of a recording's `number`-th frame (from 1)."""
    return f"frame_{number:04d}.png"


def _header(window: Window) -> bytes:
    return json.dumps({"before": window.before, "after": window.after}).encode() + b"\n"


def _line(record: FrameRecord) -> bytes:
    return record.model_dump_json().encode() + b"\n"


def _checked(folder: Path, line: bytes, stream_id: str, number: int) -> FrameRecord | None:
    """A journaled frame, if it is the one expected there and its file is whole."""
    try:
        record = FrameRecord.model_validate_json(line)
        if record.stream_id != stream_id or record.file != frame_name(number):
            return None
        digest = hashlib.sha256((folder / record.file).read_bytes()).hexdigest()
    except (ValidationError, OSError):
        return None
    return record if digest == record.sha256 else None
