"""Screen-share signalling over the broker: offer/answer and share control.

SDP offers and answers travel as protocol :class:`~assist.protocol.messages.Signal`
messages on the control channel each side already has to the broker, which
relays them within a live session. The user's side always offers (only the
user starts a share), the agent's side answers::

    user (ScreenShare)                 broker                agent (ShareViewer)
    Signal(offer, sdp, "screen,voice") ──────>  relay  ──────> answer()
            accept()  <────── Signal(answer, sdp) <──────
    Signal(pause|resume|bye) ──────────────────────────────> on_state(...)
                      <──────────── Signal(bye) ─────────────  stop()

``Signal.media`` names the media lines of the offer: ``screen`` (sent by the
user) and the ones the user asks to receive: ``voice`` (the agent's voice)
and ``camera`` (the agent's camera).

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


def _media(screen: bool, voice: bool, camera: bool, mic: bool = False) -> str:
    return ",".join(n for n, on in (("screen", screen), ("voice", voice), ("camera", camera),
                                    ("mic", mic))
                    if on)


class ScreenShare:
    """The user's side: share the desktop with the session's agent.

    Args:
        link: the user's started link to the broker.
        session: the live session id.
        peer: a fresh :class:`MediaPeer` (its ICE settings from ``SessionInfo``).
        capture: the configured desktop capture (not started).
        voice: ask for the agent's voice.
        camera: ask for the agent's camera.
        speaker: a sink with aiortc's recorder interface for the agent's voice
            (from :func:`assist.media.audio.open_speaker`).
        on_state: notified when the agent ends the share.
        stamp: capture-thread hook for benchmarks (see :class:`ScreenTrack`).
    """

    def __init__(self, link: Link, session: str, peer: MediaPeer, capture: ScreenCapture, *,
                 voice: bool = True, camera: bool = False, speaker: Any = None,
                 mic: Any = None,
                 on_state: StateCallback | None = None, stamp: Stamp | None = None) -> None:
        self.link = link
        self.session = session
        self.peer = peer
        self.track = ScreenTrack(capture, stamp)
        self.voice = voice
        self.camera = camera
        self.speaker = speaker
        self.mic = mic
        self.on_state = on_state
        self.code = ""
        self.camera_view: VideoReceiver | None = None
        self.offered_at = 0.0
        self.ended = False
        self._tasks: set[asyncio.Future[Any]] = set()
        peer.on_track = self._on_track

    async def start(self, timeout: float = 15.0) -> str:
        """Offer the share, wait for the agent's answer and return the verification code.

        Raises:
            CaptureError: if the desktop cannot be captured.
            MediaError: if the agent declines, does not answer, or negotiation fails.
            ConnectionFailed: if the broker connection drops.
        """
        self.track.start()  # grab the first frame while negotiating
        self.peer.send_video(self.track)
        if self.mic is not None:
            # The user's voice to the agent, the agent's back on the same line.
            self.peer.send_audio(self.mic, receive=self.voice)
        elif self.voice:
            self.peer.receive("audio")
        if self.camera:
            self.peer.receive("video")
        offer = await self.peer.offer()
        waiter = asyncio.ensure_future(self.link.wait_for(
            lambda msg: isinstance(msg, m.Signal) and msg.session == self.session
            and msg.kind in ("answer", "bye"), timeout))
        try:
            self.offered_at = time.monotonic()
            await self.link.send(m.Signal(session=self.session, kind="offer", sdp=offer,
                                          media=_media(True, self.voice, self.camera,
                                                       self.mic is not None)))
            reply = await waiter
        except StateError:
            await self._close()
            raise MediaError(f"the agent did not accept the screen share within {timeout:g} s"
                             ) from None
        except AssistError:
            await self._close()
            raise
        finally:
            waiter.cancel()
        assert isinstance(reply, m.Signal)
        if reply.kind == "bye":
            await self._close()
            raise MediaError("the agent declined the screen share")
        await self.peer.accept(reply.sdp)
        self.code = self.peer.verification_code(self.session)
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
        if msg.session != self.session:
            return
        if msg.kind == "bye":
            await self._close()
        elif msg.kind == "pause":
            # The agent may ask; the user's machine decides, and pausing is always safe.
            # (Resuming is the user's call alone, so an agent's "resume" is ignored.)
            await self.pause()

    async def _signal(self, kind: m.SignalKind) -> None:
        await self.link.send(m.Signal(session=self.session, kind=kind))

    def _on_track(self, kind: Kind, track: Any) -> None:
        if kind == "audio" and self.speaker is not None:
            self.speaker.addTrack(track)
            self._tasks.add(asyncio.ensure_future(self.speaker.start()))
        elif kind == "video":
            self.camera_view = VideoReceiver(track)
            self.camera_view.start()

    async def _close(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.track.stop()
        if self.camera_view is not None:
            await self.camera_view.stop()
        if self.speaker is not None:
            with contextlib.suppress(Exception):  # a device that vanished must not stop shutdown
                await self.speaker.stop()
        await self.peer.close()
        if self.on_state is not None:
            self.on_state("ended")


class ShareViewer:
    """The agent's side: receive the user's desktop, send voice/camera if asked.

    Args:
        link: the agent's started link to the broker.
        session: the live session id.
        peer: a fresh :class:`MediaPeer`.
        voice: the agent's voice track (from :func:`assist.media.audio.open_voice`).
        camera: the agent's camera track, if any.
        on_frame: called on the loop with each decoded desktop frame.
        on_state: called with ``"live"``, ``"paused"``, ``"resumed"``, ``"ended"``.
    """

    def __init__(self, link: Link, session: str, peer: MediaPeer, *, voice: Any = None,
                 camera: Any = None, speaker: Any = None,
                 on_frame: Callable[[ReceivedFrame], object] | None = None,
                 on_state: StateCallback | None = None) -> None:
        self.link = link
        self.session = session
        self.peer = peer
        self.voice = voice
        self.camera = camera
        self.speaker = speaker
        self.heard = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self.on_frame = on_frame
        self.on_state = on_state
        self.screen: VideoReceiver | None = None
        self.code = ""
        self.paused = False
        self.ended = False
        self.requested: tuple[str, ...] = ()
        peer.on_track = self._on_track

    async def handle(self, msg: m.Signal) -> None:
        """Process a ``Signal`` of this session; an offer is answered.

        Raises:
            MediaError: if the offer cannot be answered (the user is told ``bye``).
        """
        if msg.session != self.session or self.ended:
            return
        if msg.kind == "offer":
            await self._answer(msg)
        elif msg.kind in ("pause", "resume"):
            self.paused = msg.kind == "pause"
            self._notify("paused" if self.paused else "resumed")
        elif msg.kind == "bye":
            await self._close()

    async def _answer(self, offer: m.Signal) -> None:
        self.requested = tuple(offer.media.split(",")) if offer.media else ()
        send: dict[Kind, Any] = {}
        if self.voice is not None and "voice" in self.requested:
            send["audio"] = self.voice
        if self.camera is not None and "camera" in self.requested:
            send["video"] = self.camera
        try:
            answer = await self.peer.answer(offer.sdp, send)
        except MediaError:
            with contextlib.suppress(AssistError):
                await self.link.send(m.Signal(session=self.session, kind="bye"))
            await self._close()
            raise
        await self.link.send(m.Signal(session=self.session, kind="answer", sdp=answer))
        self.code = self.peer.verification_code(self.session)
        self._notify("live")

    async def ask_pause(self) -> None:
        """Ask the user's side to pause (it decides; pausing is always allowed)."""
        await self.link.send(m.Signal(session=self.session, kind="pause"))

    async def stop(self) -> None:
        """Stop viewing and tell the user (idempotent)."""
        if not self.ended:
            with contextlib.suppress(AssistError):
                await self.link.send(m.Signal(session=self.session, kind="bye"))
        await self._close()

    def _on_track(self, kind: Kind, track: Any) -> None:
        if kind == "video" and self.screen is None:
            self.screen = VideoReceiver(track, on_frame=self.on_frame)
            self.screen.start()
        elif kind == "audio" and "mic" in self.requested:
            # The user's voice: played on the agent's speaker (or discarded, said so).
            self.heard = True
            if self.speaker is not None:
                self.speaker.addTrack(track)
                self._tasks.add(asyncio.ensure_future(self.speaker.start()))

    def _notify(self, state: str) -> None:
        if self.on_state is not None:
            self.on_state(state)

    async def _close(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.screen is not None:
            await self.screen.stop()
        if self.speaker is not None:
            with contextlib.suppress(Exception):  # a device that vanished must not stop shutdown
                await self.speaker.stop()
        await self.peer.close()
        self._notify("ended")
