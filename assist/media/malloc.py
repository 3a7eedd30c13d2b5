"""glibc malloc settings that keep full-HD frame buffers cheap.

A 1080p BGRA frame is 8 MiB and a YUV frame 3 MiB; the share allocates
several per frame (capture, conversion, encoder input) and frees them a few
milliseconds later. glibc serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB
at start, adapting up to 32 MiB only after frees) with fresh ``mmap`` calls,
so every frame pays for mapping and zero-filling ~3,000 pages and unmapping
them again: tens of milliseconds of system time per second of video. Raising
the threshold to its maximum keeps such buffers in the heap where they are
reused; a generous trim threshold stops the heap from being handed back to
the kernel between frames. ``python -m bench.media`` measures the effect.

Equivalent to ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=134217728``
in the environment, but set from code so that ``assist`` needs no wrapper.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's largest allowed mmap threshold on 64-bit machines."""
TRIM_THRESHOLD = 128 * 1024 * 1024

_state = {"done": False}


def tune_for_frames() -> bool:
    """Apply the thresholds once per process; ``False`` where not glibc/Linux."""
    if _state["done"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no glibc mallopt here; frame buffers use default malloc settings")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _state["done"] = ok
    log.debug("malloc thresholds for frame buffers %s", "set" if ok else "refused")
    return ok
