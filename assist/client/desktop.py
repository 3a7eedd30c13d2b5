"""Desktop sharing of one session, for the apps: the user's share and the agent's view.

Headless glue between the apps and :mod:`assist.media` (no Textual here, so
``assist help --no-tui`` uses it too): :class:`DesktopSender` runs
:class:`~assist.media.signalling.ScreenShare` for ``assist help --screen`` and
:class:`DesktopReceiver` runs :class:`~assist.media.signalling.ShareViewer`
in the console. Both keep what a person must see (state, verification code,
which audio device is used, the last error) as plain attributes, report a
change through ``on_change``, and turn every failure into a message: an
:class:`~assist.errors.AssistError` never escapes them, because a desktop
that cannot be shared must not end the terminal session.

Importing this module does not import aiortc or numpy: the media stack takes
~0.3 s to load, so it is imported when a share starts and ``assist help``
without ``--screen`` reaches the queue as fast as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from assist.client.media_side import AnsweringSide, MediaSide, nothing
from assist.config import Codec
from assist.errors import AssistError, ConfigError
from assist.protocol import messages as m

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from assist.client.link import Link
    from assist.media.signalling import ScreenShare, ShareViewer
    from assist.media.tracks import ReceivedFrame

log = logging.getLogger(__name__)

ShareState = Literal["starting", "waiting", "live", "paused", "ended", "failed"]
FrameSink = Callable[["npt.NDArray[np.uint8]"], None]


def parse_region(text: str) -> tuple[int, int, int, int]:
    """``X,Y,W,H`` (desktop pixels) as a tuple.

    Raises:
        ConfigError: if it is not four whole numbers with a positive size.
    """
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--region wants X,Y,W,H in pixels (e.g. 0,0,1280,720), "
                          f"got {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ConfigError(f"--region {text!r}: the position cannot be negative and the size "
                          "must be positive")
    return x, y, w, h


@dataclass(frozen=True)
class DesktopRequest:
    """What the user asked to share with ``assist help --screen``.

    Attributes:
        monitor: 0 for all monitors, N for the N-th.
        region: ``(x, y, width, height)`` of the desktop; overrides ``monitor``.
        codec: ``VP8`` or ``H264``.
        display: X display; ``None`` uses ``$DISPLAY``.

    Voice goes over the session's call (:mod:`assist.client.call`), not the share.
    """

    monitor: int = 0
    region: tuple[int, int, int, int] | None = None
    codec: Codec = "VP8"
    display: str | None = None


def describe_mark(agent: str, a: m.Annotation) -> str:
    """A desktop annotation in words, for a user who has no overlay on the desktop."""
    who = agent or "the agent"
    label = f': "{a.text}"' if a.text else ""
    if a.kind in ("box", "highlight") and (a.x2, a.line2) != (a.x, a.line):
        left, right = sorted((a.x, a.x2))
        top, bottom = sorted((a.line, a.line2))
        return (f"{who} marks the area {left},{top} to {right},{bottom} on your "
                f"screen{label}")
    return f"{who} points at {a.x},{a.line} on your screen{label}"


class DesktopSender(MediaSide):
    """The user's side: share the desktop in one session.

    Args:
        link: the user's started link to the broker.
        info: the live session (its ``ice_servers`` are used).
        request: what to share.
        host_addresses: ICE host-candidate addresses (``ClientConfig.media_host_addresses``).
        on_change: called after every change of what is shown.
    """

    def __init__(self, link: Link, info: m.SessionInfo, request: DesktopRequest,
                 host_addresses: tuple[str, ...] | None,
                 on_change: Callable[[], None] = nothing) -> None:
        self.link = link
        self.info = info
        self.request = request
        self.host_addresses = host_addresses
        self.on_change = on_change
        self.state: ShareState = "starting"
        self.code = ""
        self.error = ""
        self.share: ScreenShare | None = None
        self._stopped = False
        self._stopping: asyncio.Future[None] | None = None
        self.role = "desktop share"

    async def start(self, timeout: float = 15.0) -> bool:
        """Offer the desktop and wait for the agent; ``False`` (and :attr:`error`) on failure."""
        try:
            self.share = await self._prepare()
            if self._stopped:  # the user stopped before the offer went out
                await self.share.stop()
                return False
            self.code = await self.share.start(timeout)
        except AssistError as exc:
            if self.share is not None:
                await self.share.stop()
            if not self._stopped:
                self._set("failed", exc.message)
            return False
        if not self.share.ended:
            self._set("live")
        return True

    async def _prepare(self) -> ScreenShare:
        from assist.media.peer import MediaPeer
        from assist.media.signalling import ScreenShare
        from assist.share.screen import Region, ScreenCapture, monitors

        request = self.request
        # Without a display, say so before any offer reaches the agent.
        await asyncio.to_thread(monitors, request.display)
        peer = MediaPeer(ice_servers=self.info.ice_servers, host_addresses=self.host_addresses,
                         codec=request.codec)
        capture = ScreenCapture(monitor=request.monitor,
                                region=Region(*request.region) if request.region else None,
                                display=request.display)
        return ScreenShare(self.link, self.info.session, peer, capture, on_state=self._ended)

    async def handle(self, msg: m.Signal) -> None:
        """A ``Signal`` of the session from the agent (pause, bye)."""
        if self.share is None or msg.session != self.info.session:
            return
        try:
            await self.share.handle(msg)
        except AssistError as exc:
            self._set("failed", exc.message)
            return
        if self.state == "live" and self.share.track.capture.paused:
            self._set("paused")

    async def toggle_pause(self) -> None:
        """Pause a live share, or resume a paused one."""
        if self.share is None or self.state not in ("live", "paused"):
            return
        try:
            if self.state == "live":
                await self.share.pause()
                self._set("paused")
            else:
                await self.share.resume()
                self._set("live")
        except AssistError as exc:
            self._set("failed", exc.message)

    async def stop(self) -> None:
        """Stop sharing at once; the agent is told.

        Idempotent: the first call does it (even if its caller is cancelled),
        later ones wait for it, so the share ends and says so exactly once.
        """
        self._stopped = True  # at once: a start still preparing must see it
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self.share is not None:
            await self.share.stop()
        if self.state not in ("failed", "ended"):  # the media layer may have said it
            self._set("ended")

    @property
    def area(self) -> tuple[int, int, int, int] | None:
        """The desktop rectangle shared, ``(x, y, width, height)`` in screen pixels.

        The agent places desktop marks in the shared frame's pixels: they
        belong at this rectangle of the real screen. ``None`` before capture.
        """
        region = self.share.track.capture.region if self.share is not None else None
        return None if region is None else (region.left, region.top, region.width,
                                            region.height)

    def poll(self) -> bool:
        """Notice a capture that failed while sharing.

        Returns:
            ``True`` if it did; the caller then calls :meth:`stop`.
        """
        share = self.share
        if share is None or self.state not in ("live", "paused"):
            return False
        error = share.track.capture.error
        if error is None:
            return False
        self._set("failed", error.message)
        return True

    def describe(self) -> str:
        """What the user should know about the share, in a few lines."""
        return {
            "starting": "Desktop: offering your screen to the agent...",
            "waiting": "Desktop: offering your screen to the agent...",
            "live": (f"Desktop shared (F6 pause, F7 stop). Read this code aloud: "
                     f"{self.code}; the agent sees the same."),
            "paused": ("Desktop paused: the agent sees the last picture (F6 resumes, F7 "
                       f"stops). Code {self.code}."),
            "ended": "Desktop no longer shared.",
            "failed": f"Desktop not shared: {self.error}",
        }[self.state]



class DesktopReceiver(AnsweringSide):
    """The agent's side: view the desktop one session's user shares.

    Args:
        link: the agent's started link to the broker.
        info: the live session.
        host_addresses: ICE host-candidate addresses.
        on_frame: called on the loop with each decoded picture, ``(h, w, 3)`` RGB.
        on_change: called after every change of what is shown.
    """

    def __init__(self, link: Link, info: m.SessionInfo, host_addresses: tuple[str, ...] | None,
                 on_frame: FrameSink, on_change: Callable[[], None] = nothing) -> None:
        self.link = link
        self.info = info
        self.host_addresses = host_addresses
        self.on_frame = on_frame
        self.on_change = on_change
        self.state: ShareState = "waiting"
        self.code = ""
        self.error = ""
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.viewer: ShareViewer | None = None
        self.role = "desktop view"
        self._lock = asyncio.Lock()

    async def _relay(self, msg: m.Signal) -> None:
        if self.viewer is not None:
            await self.viewer.handle(msg)
            if msg.kind in ("pause", "resume") and self.state in ("live", "paused"):
                self._set("paused" if self.viewer.paused else "live")

    async def _answer(self, offer: m.Signal) -> None:
        from assist.media.peer import MediaPeer
        from assist.media.signalling import ShareViewer

        await self._close()  # a new offer replaces an earlier share
        self.error, self.code, self.frames, self.size = "", "", 0, None
        self._set("starting")
        peer = MediaPeer(ice_servers=self.info.ice_servers, host_addresses=self.host_addresses)
        self.viewer = ShareViewer(self.link, self.info.session, peer, on_frame=self._frame,
                                  on_state=self._ended)
        await self.viewer.handle(offer)
        self.code = self.viewer.code
        self._set("live")

    def _frame(self, frame: ReceivedFrame) -> None:
        self.frames += 1
        rgb = frame.rgb
        self.size = (int(rgb.shape[1]), int(rgb.shape[0]))
        self.on_frame(rgb)

    async def ask_pause(self) -> None:
        """Ask the user's side to pause (it always may)."""
        if self.viewer is not None and self.state == "live":
            with contextlib.suppress(AssistError):
                await self.viewer.ask_pause()

    async def _close(self) -> None:
        viewer, self.viewer = self.viewer, None
        if viewer is not None:
            await viewer.stop()

    def describe(self) -> str:
        """The share in one or two lines of plain text, for the agent."""
        size = f" {self.size[0]}x{self.size[1]}" if self.size else ""
        return {
            "waiting": "desktop: not shared",
            "starting": "desktop: connecting...",
            "live": f"desktop{size}: code {self.code} (the user reads the same)",
            "paused": f"desktop{size}: paused by the user · code {self.code}",
            "ended": "desktop: share ended",
            "failed": f"desktop: failed: {self.error}",
        }[self.state]

