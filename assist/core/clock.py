"""Time for the broker's logic: what time it is and "call this later".

The hub and its sessions never read a clock or arm an asyncio timer of their
own; they are handed a :class:`Clock`. The broker uses :class:`LoopClock`
(wall-clock time, timers on the running asyncio loop); tests use
:class:`FakeClock` and move time forward by hand, so the order of events
never depends on sleeping::

    clock = FakeClock(1000.0)
    clock.call_later(5, fired.append, "grace")
    clock.advance(4.9)    # nothing yet
    clock.advance(0.1)    # fired == ["grace"]
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol


class Timer(Protocol):
    """A pending call that can be cancelled."""

    def cancel(self) -> None:
        """Do not make the call (no effect once it was made)."""
        ...


class Clock(Protocol):
    """Wall-clock time and delayed calls."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call ``callback(*args)`` after ``delay`` seconds."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds of this clock's time."""
        ...


class LoopClock:
    """``time.time`` and timers on the running asyncio loop."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now

    def now(self) -> float:
        """Seconds since the epoch."""
        return self._now()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Arm a timer on the running loop."""
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(delay)


class _FakeTimer:
    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told; timers fire inside :meth:`advance`."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _FakeTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The fake time."""
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Arm a timer that fires when the fake time passes ``now + delay``."""
        timer = _FakeTimer(self._now + max(0.0, delay), callback, args)
        heapq.heappush(self._heap, (timer.when, next(self._order), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        """Wait until the fake time has moved ``delay`` seconds on."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        self.call_later(delay, wake)
        await done

    def advance(self, seconds: float) -> int:
        """Move time forward, firing due timers in order; return how many fired."""
        target = self._now + seconds
        fired = 0
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.callback(*timer.args)
            fired += 1
        self._now = target
        return fired

    def pending(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)
