"""Media signalling over the broker: offer/answer, and the desktop share's control.

SDP offers and answers travel as protocol :class:`~assist.protocol.messages.Signal`
messages on the control channel each side already has to the broker, which
relays them within a live session. The user's side always offers (only the
user starts a share), the agent's side answers::

    user (ScreenShare)                 broker                agent (ShareViewer)
    Signal(offer, sdp, "screen") ────────────>  relay  ──────> answer()
            accept()  <────── Signal(answer, sdp) <──────
    Signal(pause|resume|bye) ──────────────────────────────> on_state(...)
                      <──────────── Signal(bye) ─────────────  stop()

Each session has up to two media connections, told apart by ``Signal.line``:
``screen``, the desktop share (video from the user, nothing back), and
``call``, the voice and the agent's face (:mod:`assist.media.call`). Both are
offered by the user's side with :func:`negotiate` and answered with
:func:`answer_offer`; ``Signal.media`` names what an offer carries.

The application owns :meth:`Link.events`; it passes every ``Signal`` of the
session to :meth:`ScreenShare.handle` / :meth:`ShareViewer.handle`. Only the
one answer the user waits for is taken with :meth:`Link.wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from assist.errors import AssistError, StateError
from assist.media.errors import MediaError
from assist.media.peer import Kind, MediaPeer
from assist.media.tracks import ReceivedFrame, ScreenTrack, Stamp, VideoReceiver
from assist.protocol import messages as m
from assist.share.screen import ScreenCapture

log = logging.getLogger(__name__)


class Link(Protocol):
    """What signalling needs of the link to the broker (a ``client.link.Link``)."""

    async def send(self, msg: m.Msg) -> None:
        """Send a message that has no answer."""
        ...

    async def wait_for(self, match: Callable[[m.Msg], bool],
                       timeout: float | None = None) -> m.Msg:
        """Wait for the next event that satisfies ``match``."""
        ...


StateCallback = Callable[[str], object]
"""Called with ``"live"``, ``"paused"``, ``"resumed"`` or ``"ended"``."""


async def negotiate(link: Link, session: str, peer: MediaPeer, line: m.MediaLine,
                    media: str, timeout: float, what: str) -> str:
    """Offer ``peer``'s media on ``line``, apply the agent's answer, return the code.

    Args:
        media: the ``Signal.media`` names of the offer's lines.
        what: the media in words, for errors (``"the screen share"``).

    Raises:
        MediaError: if the agent declines, does not answer within ``timeout``,
            or the answer cannot be used.
        ConnectionFailed: if the broker connection drops.
    """
    offer = await peer.offer()
    waiter = asyncio.ensure_future(link.wait_for(
        lambda msg: isinstance(msg, m.Signal) and msg.session == session
        and msg.line == line and msg.kind in ("answer", "bye"), timeout))
    try:
        await link.send(m.Signal(session=session, kind="offer", sdp=offer, media=media,
                                 line=line))
        reply = await waiter
    except StateError:
        raise MediaError(f"the agent did not accept {what} within {timeout:g} s") from None
    finally:
        waiter.cancel()
    assert isinstance(reply, m.Signal)
    if reply.kind == "bye":
        raise MediaError(f"the agent declined {what}")
    await peer.accept(reply.sdp)
    return peer.verification_code(session)


async def answer_offer(link: Link, peer: MediaPeer, offer: m.Signal,
                       send: dict[Kind, Any]) -> str:
    """Answer ``offer`` with ``peer`` (sending ``send``) and return the code.

    Raises:
        MediaError: if the offer cannot be answered; the user is told ``bye``.
    """
    try:
        answer = await peer.answer(offer.sdp, send)
    except MediaError:
        with contextlib.suppress(AssistError):
            await link.send(m.Signal(session=offer.session, kind="bye", line=offer.line))
        raise
    await link.send(m.Signal(session=offer.session, kind="answer", sdp=answer,
                             line=offer.line))
    return peer.verification_code(offer.session)


class ScreenShare:
    """The user's side: share the desktop with the session's agent (video only).

    Args:
        link: the user's started link to the broker.
        session: the live session id.
        peer: a fresh :class:`MediaPeer` (its ICE settings from ``SessionInfo``).
        capture: the configured desktop capture (not started).
        on_state: notified when the agent ends the share.
        stamp: capture-thread hook for benchmarks (see :class:`ScreenTrack`).
    """

    def __init__(self, link: Link, session: str, peer: MediaPeer, capture: ScreenCapture, *,
                 on_state: StateCallback | None = None, stamp: Stamp | None = None) -> None:
        self.link = link
        self.session = session
        self.peer = peer
        self.track = ScreenTrack(capture, stamp)
        self.on_state = on_state
        self.code = ""
        self.offered_at = 0.0
        """``time.monotonic()`` when the offer was made (first-frame latency counts from it)."""
        self.ended = False

    async def start(self, timeout: float = 15.0) -> str:
        """Offer the share, wait for the agent's answer and return the verification code.

        Raises:
            CaptureError: if the desktop cannot be captured.
            MediaError: if the agent declines, does not answer, or negotiation fails.
            ConnectionFailed: if the broker connection drops.
        """
        self.track.start()  # grab the first frame while negotiating
        self.peer.send_video(self.track)
        self.offered_at = time.monotonic()
        try:
            self.code = await negotiate(self.link, self.session, self.peer, "screen",
                                        "screen", timeout, "the screen share")
        except AssistError:
            await self._close()
            raise
        return self.code

    async def pause(self) -> None:
        """Stop sending the desktop (the agent sees it paused) until :meth:`resume`."""
        self.track.pause()
        await self._signal("pause")

    async def resume(self) -> None:
        """Send the desktop again."""
        self.track.resume()
        await self._signal("resume")

    async def stop(self) -> None:
        """End the share and tell the agent (idempotent)."""
        if not self.ended:
            with contextlib.suppress(AssistError):  # the broker may already be gone
                await self._signal("bye")
        await self._close()

    async def handle(self, msg: m.Signal) -> None:
        """Process a ``Signal`` of this session the application received."""
        if msg.session != self.session or msg.line != "screen":
            return
        if msg.kind == "bye":
            await self._close()
        elif msg.kind == "pause":
            # The agent may ask; the user's machine decides, and pausing is always safe.
            # (Resuming is the user's call alone, so an agent's "resume" is ignored.)
            await self.pause()

    async def _signal(self, kind: m.SignalKind) -> None:
        await self.link.send(m.Signal(session=self.session, kind=kind, line="screen"))

    async def _close(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.track.stop()
        await self.peer.close()
        if self.on_state is not None:
            self.on_state("ended")


class ShareViewer:
    """The agent's side: receive the user's desktop.

    Args:
        link: the agent's started link to the broker.
        session: the live session id.
        peer: a fresh :class:`MediaPeer`.
        on_frame: called on the loop with each decoded desktop frame.
        on_state: called with ``"live"``, ``"paused"``, ``"resumed"``, ``"ended"``.
    """

    def __init__(self, link: Link, session: str, peer: MediaPeer, *,
                 on_frame: Callable[[ReceivedFrame], object] | None = None,
                 on_state: StateCallback | None = None) -> None:
        self.link = link
        self.session = session
        self.peer = peer
        self.on_frame = on_frame
        self.on_state = on_state
        self.screen: VideoReceiver | None = None
        self.code = ""
        self.paused = False
        self.ended = False
        peer.on_track = self._on_track

    async def handle(self, msg: m.Signal) -> None:
        """Process a ``Signal`` of this session; an offer is answered.

        Raises:
            MediaError: if the offer cannot be answered (the user is told ``bye``).
        """
        if msg.session != self.session or msg.line != "screen" or self.ended:
            return
        if msg.kind == "offer":
            try:
                self.code = await answer_offer(self.link, self.peer, msg, {})
            except MediaError:
                await self._close()
                raise
            self._notify("live")
        elif msg.kind in ("pause", "resume"):
            self.paused = msg.kind == "pause"
            self._notify("paused" if self.paused else "resumed")
        elif msg.kind == "bye":
            await self._close()

    async def ask_pause(self) -> None:
        """Ask the user's side to pause (it decides; pausing is always allowed)."""
        await self.link.send(m.Signal(session=self.session, kind="pause", line="screen"))

    async def stop(self) -> None:
        """Stop viewing and tell the user (idempotent)."""
        if not self.ended:
            with contextlib.suppress(AssistError):
                await self.link.send(m.Signal(session=self.session, kind="bye", line="screen"))
        await self._close()

    def _on_track(self, kind: Kind, track: Any) -> None:
        if kind == "video" and self.screen is None:
            self.screen = VideoReceiver(track, on_frame=self.on_frame)
            self.screen.start()

    def _notify(self, state: str) -> None:
        if self.on_state is not None:
            self.on_state(state)

    async def _close(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.screen is not None:
            await self.screen.stop()
        await self.peer.close()
        self._notify("ended")
