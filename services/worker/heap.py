"""The worker keeps its heap between jobs instead of giving it back to the system.

A 1080p job allocates about 200 MB of frame and PNG buffers. By default glibc serves each
6 MB buffer with a fresh mmap, or trims the heap once a job frees it, so the next job
faults every page in again: in this VM that was a fifth of a 1080p job (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum: frame-sized buffers come from the heap
TRIM_THRESHOLD = 1024 * 1024 * 1024  # give memory back only past 1 GB free at the top


def keep_heap() -> bool:
    """Ask glibc to serve frame-sized buffers from the heap and keep it; False without glibc."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here; the heap is left to the allocator's defaults")
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
