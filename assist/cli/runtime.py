"""How ``assist`` processes run: the event loop, and the collector of a long-lived broker.

The broker and both clients spend most of a keystroke's round trip in event
loop wake-ups and transport calls; uvloop (libuv) does those in C. It is a
dependency on POSIX; where it cannot be imported the standard asyncio loop
serves just the same, only slower.

A broker holding thousands of connections has hundreds of thousands of live
objects; Python's cycle collector walks them all in a full collection, which
stalled routing for 100-250 ms at a time under load (closed SSH connections
are cyclic garbage, so the collector cannot simply be turned off).
:func:`steady_gc` takes what exists after startup out of its walks for good
and lets it run less often.
"""

from __future__ import annotations

import asyncio
import gc
import logging

log = logging.getLogger(__name__)


def use_fast_loop() -> bool:
    """Make new event loops uvloop loops; return False if uvloop is not available."""
    try:
        import uvloop
    except ImportError:
        log.debug("uvloop is not installed: the standard asyncio loop is used")
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


GC_THRESHOLDS = (10_000, 20, 100)
"""Young allocations before a collection, and how many younger collections make
one of the next generation (Python's defaults: 700, 10, 10)."""


def steady_gc() -> None:
    """Tune the cycle collector for a long-running server (call once it has started)."""
    gc.collect()
    gc.freeze()  # modules, config, the store: alive until the process ends
    gc.set_threshold(*GC_THRESHOLDS)
