"""Processes that churn through frame-sized buffers keep their heap instead of giving it
back to the system after each one.

By default glibc serves each 6 MB buffer with a fresh mmap, or trims the heap once a buffer
at its top is freed, so the next buffer faults every page in again (1,518 faults for a
1080p frame). A 1080p worker job allocates about 200 MB of such buffers: the faults were a
fifth of the job. The capture makes three per frame (decoded pixels, the entry's bytes,
the packed command): 45 % of its CPU went to faulting them in (docs/benchmarks.md). Kept,
the heap stays at its peak, a few buffers, and is reused.

One heap for all threads: glibc gives each thread that allocates an arena of its own, and
each arena keeps its peak too. A worker whose frames are read by a thread of their own held
another ~95 MB per pool process that way (a 720p stack with 2 workers: worker RSS 368 ->
562 MB; with one arena, 393). These processes make few allocations, each large, so the
one lock does not contend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum: frame-sized buffers come from the heap
TRIM_THRESHOLD = 1024 * 1024 * 1024  # give memory back only past 1 GB free at the top


def keep_heap() -> bool:
    """Ask glibc to serve frame-sized buffers from one heap and keep it; False without glibc."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here; the heap is left to the allocator's defaults")
        return False
    return (
        bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
        and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        and bool(mallopt(M_ARENA_MAX, 1))
    )
