"""The event loop every ``assist`` command runs on: uvloop where it is installed.

The broker and both clients spend most of a keystroke's round trip in event
loop wake-ups and transport calls; uvloop (libuv) does those in C. It is a
dependency on POSIX; where it cannot be imported the standard asyncio loop
serves just the same, only slower.
"""

from __future__ import annotations

import asyncio
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
