"""The call of a session: the agent's voice and face to the user, the user's voice
to the agent only with the user's permission.

A second media connection beside the desktop share (``Signal.line ==
"call"``), offered by the user's side as soon as an agent is there::

    user (CallOffer)                     broker              agent (CallAnswer)
    audio sendrecv  (MicGate: silence    ──offer──>          voice (MicGate: muted
      unless the mic grant is live)                            = silence), speaker
    video recvonly  (the agent's face)   <──answer──         camera, if any

What the user's side never does, whatever the agent sends: open a camera,
or send video on this line (its one video line receives only; an offer
from the agent is not answered). The user's microphone is opened only while
``allowed()`` says so (the mic grant is live, the user has not muted or
paused) and is closed again the moment it does not: :class:`MicGate` asks
before every 20 ms frame, so a revoke silences the very next frame.

:class:`Listener` sits between a received voice and the speaker: it mutes,
measures the level (the "speaking" indicator) and lets tests and benchmarks
see every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from assist.errors import AssistError
from assist.media.audio import Source
from assist.media.errors import MediaError
from assist.media.peer import Kind, MediaPeer
from assist.media.signalling import Link, StateCallback, answer_offer, negotiate
from assist.media.tracks import ReceivedFrame, VideoReceiver
from assist.protocol import messages as m

log = logging.getLogger(__name__)

RATE = 48_000
"""Sample rate of every voice frame this side sends (Opus's own rate)."""
FRAME = 960
"""Samples of one 20 ms frame."""
SPEAKING_LEVEL = 0.02
"""RMS level (full scale 1.0) above which a voice counts as speaking (about -34 dBFS)."""
SPEAKING_HOLD = 0.4
"""Seconds the speaking indicator stays on after the voice drops below the level."""
MEDIA = "voice,mic,face"
"""``Signal.media`` of a call offer: the agent's voice, the user's microphone, the face
(``voice,mic`` when the user's side shows no face: ``assist help --no-tui``)."""

AudioHook = Callable[[AudioFrame], object]


def silence(samples: int = FRAME) -> AudioFrame:
    """``samples`` of silence, mono 16-bit at :data:`RATE`."""
    frame = AudioFrame(format="s16", layout="mono", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = RATE
    return frame


def level(frame: AudioFrame) -> float:
    """RMS level of a 16-bit frame, 0.0 (silence) to 1.0 (full scale)."""
    samples = frame.to_ndarray().astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0


class MicGate(MediaStreamTrack):
    """A voice track that is the microphone only while ``allowed()``, silence otherwise.

    The device is opened (in a thread: it may block) the first time it is
    allowed and closed as soon as it is not, so a microphone that may not be
    heard is not even open. Every frame leaves as mono 16-bit at
    :data:`RATE` with a continuous clock, whatever the device gives.

    Args:
        allowed: asked before every frame.
        open_source: opens the microphone (a :class:`~assist.media.audio.Source`).
    """

    kind = "audio"

    def __init__(self, allowed: Callable[[], bool], open_source: Callable[[], Source]) -> None:
        super().__init__()
        self.allowed = allowed
        self.open_source = open_source
        self.source: Source | None = None
        self.description = ""
        """What the source is (set once it was opened)."""
        self.opened = 0
        """How often the source was opened (tests: never without permission)."""
        self.voiced = 0
        """Frames sent from the source (not silence)."""
        self._opening: asyncio.Task[None] | None = None
        self._resampler: AudioResampler | None = None
        self._pending: deque[AudioFrame] = deque()
        self._shut = asyncio.Event()
        self._sent = 0
        self._t0 = 0.0

    @property
    def live(self) -> bool:
        """The source is open and its frames go out."""
        return self.source is not None

    async def recv(self) -> AudioFrame:
        """The next 20 ms (or so) of voice: the source's, or silence."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._t0:
            self._t0 = time.monotonic()
        if self.allowed():
            frame = await self._from_source()
            if frame is not None and self.allowed():  # asked again: a revoke while waiting
                return self._stamp(frame, voiced=True)
        else:
            self.shut()
        await asyncio.sleep(max(0.0, self._t0 + self._sent / RATE - time.monotonic()))
        return self._stamp(silence(), voiced=False)

    async def _from_source(self) -> AudioFrame | None:
        if self._pending:
            return self._pending.popleft()
        if self.source is None:
            if self._opening is None:
                self._opening = asyncio.ensure_future(self._open())
            return None
        # A stopped player never wakes a pending recv: wait for the frame or the shut,
        # whichever comes first, so a revoke never leaves this track stuck.
        self._shut.clear()
        reading = asyncio.ensure_future(self.source.track.recv())
        closing = asyncio.ensure_future(self._shut.wait())
        await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        if not reading.done():
            reading.cancel()
            return None
        try:
            frame = reading.result()
        except MediaStreamError:  # a file came to its end: it starts again if still allowed
            log.info("%s ended", self.description)
            self.shut()
            return None
        if self._resampler is None:
            self._resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        self._pending.extend(self._resampler.resample(frame))
        return self._pending.popleft() if self._pending else None

    async def _open(self) -> None:
        try:
            source = await asyncio.to_thread(self.open_source)
        except Exception as exc:  # a device that fails must not end the call
            log.info("the microphone could not be opened: %s", exc)
            self.description = f"could not be opened: {exc}"
            return
        if not self.allowed() or self.readyState != "live":
            source.close()  # revoked while it opened: it never sends
            self._opening = None
            return
        self.source, self.description = source, source.description
        self.opened += 1
        self._opening = None

    def _stamp(self, frame: AudioFrame, voiced: bool) -> AudioFrame:
        frame.pts = self._sent
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += frame.samples
        if voiced:
            self.voiced += 1
            # The device paces its own frames; silence that follows starts from now.
            self._t0 = time.monotonic() - self._sent / RATE
        return frame

    def shut(self) -> None:
        """Close the source now (it is opened again when next allowed).

        An open still under way in its thread is left to finish: it closes what
        it opened itself when it sees it may not be heard (cancelling it would
        leave the device open).
        """
        if self._opening is not None and self._opening.done():
            self._opening = None  # a failed open is tried again when next allowed
        self._shut.set()
        source, self.source = self.source, None
        self._pending.clear()
        self._resampler = None
        if source is not None:
            source.close()

    def stop(self) -> None:
        """End the track and release the source."""
        super().stop()
        self.shut()


class Listener(MediaStreamTrack):
    """A received voice on its way to the speaker: muted on request, its level measured.

    Args:
        source: the remote audio track.
        muted: asked for every frame; muted frames go on as silence.
        on_frame: sees every received frame (before muting), for tests and benchmarks.
    """

    kind = "audio"

    def __init__(self, source: Any, muted: Callable[[], bool] = lambda: False,
                 on_frame: AudioHook | None = None) -> None:
        super().__init__()
        self.source = source
        self.muted = muted
        self.on_frame = on_frame
        self.level = 0.0
        self.frames = 0
        self._loud_at = -SPEAKING_HOLD

    @property
    def speaking(self) -> bool:
        """The voice was above :data:`SPEAKING_LEVEL` a moment ago."""
        return time.monotonic() - self._loud_at < SPEAKING_HOLD

    async def recv(self) -> AudioFrame:
        """The next received frame (silence while muted)."""
        frame: AudioFrame = await self.source.recv()
        self.frames += 1
        self.level = level(frame) if frame.format.name == "s16" else 0.0
        if self.level >= SPEAKING_LEVEL:
            self._loud_at = time.monotonic()
        if self.on_frame is not None:
            self.on_frame(frame)
        if self.muted():
            quiet = AudioFrame(format=frame.format.name, layout=frame.layout.name,
                               samples=frame.samples)
            for plane in quiet.planes:
                plane.update(bytes(plane.buffer_size))
            quiet.pts, quiet.sample_rate, quiet.time_base = (frame.pts, frame.sample_rate,
                                                             frame.time_base)
            return quiet
        return frame


class _Ends:
    """What both ends of a call have: the peer, the speaker fed by a Listener, the end."""

    link: Link
    session: str
    peer: MediaPeer
    speaker: Any
    listener: Listener | None
    on_state: StateCallback | None
    ended: bool
    _tasks: set[asyncio.Future[Any]]

    def _listen(self, track: Any, muted: Callable[[], bool], on_audio: AudioHook | None) -> None:
        self.listener = Listener(track, muted, on_audio)
        if self.speaker is not None:
            self.speaker.addTrack(self.listener)
            self._tasks.add(asyncio.ensure_future(self.speaker.start()))

    async def stop(self) -> None:
        """Hang up (idempotent); the other side is told."""
        await self._end(tell=True)

    async def _end(self, tell: bool) -> None:
        if self.ended:
            return
        self.ended = True
        if tell:
            with contextlib.suppress(AssistError):  # the broker may be gone already
                await self.link.send(m.Signal(session=self.session, kind="bye", line="call"))
        await self._release()
        if self.speaker is not None:
            with contextlib.suppress(Exception):  # a device that vanished must not stop shutdown
                await self.speaker.stop()
        await self.peer.close()
        if self.on_state is not None:
            self.on_state("ended")

    async def _release(self) -> None:
        """Stop this side's own tracks."""


class CallOffer(_Ends):
    """The user's side of the call.

    Args:
        link: the user's started link to the broker.
        session: the live session id.
        peer: a fresh :class:`MediaPeer`.
        mic: the user's voice, gated by their permission.
        speaker: where the agent's voice is played (aiortc's recorder interface).
        muted: whether the user muted the agent's voice.
        on_face: each decoded frame of the agent's camera; ``None``: the offer asks
            for no video at all (nothing would show it).
        on_audio: each received frame of the agent's voice.
        on_state: told ``"ended"`` when the agent hangs up.
    """

    def __init__(self, link: Link, session: str, peer: MediaPeer, mic: MicGate, *,
                 speaker: Any = None, muted: Callable[[], bool] = lambda: False,
                 on_face: Callable[[ReceivedFrame], object] | None = None,
                 on_audio: AudioHook | None = None,
                 on_state: StateCallback | None = None) -> None:
        self.link = link
        self.session = session
        self.peer = peer
        self.mic = mic
        self.speaker = speaker
        self.muted = muted
        self.on_face = on_face
        self.on_audio = on_audio
        self.on_state = on_state
        self.face: VideoReceiver | None = None
        self.listener: Listener | None = None
        self.code = ""
        self.ended = False
        self._tasks: set[asyncio.Future[Any]] = set()
        peer.on_track = self._on_track

    async def start(self, timeout: float = 15.0) -> str:
        """Offer the call, wait for the agent's answer, return the verification code.

        Raises:
            MediaError: if the agent does not answer or negotiation fails.
            ConnectionFailed: if the broker connection drops.
        """
        # One audio line both ways (the gate decides what of ours is heard) and one
        # video line that only receives: the user's side has nothing to send on it.
        self.peer.send_audio(self.mic, receive=True)
        if self.on_face is not None:
            self.peer.receive("video")
        media = MEDIA if self.on_face is not None else MEDIA.removesuffix(",face")
        try:
            self.code = await negotiate(self.link, self.session, self.peer, "call", media,
                                        timeout, "the call")
        except AssistError:
            await self.stop()
            raise
        return self.code

    async def handle(self, msg: m.Signal) -> None:
        """A ``Signal`` of the call from the agent: only a hang-up is acted on."""
        if msg.session != self.session or msg.line != "call":
            return
        if msg.kind == "bye":
            await self._end(tell=False)
        elif msg.kind == "offer":
            # Media starts on the user's side only; an agent's offer is never answered.
            log.info("the agent offered media on the call line; ignored")

    async def _release(self) -> None:
        self.mic.stop()
        if self.face is not None:
            await self.face.stop()

    def _on_track(self, kind: Kind, track: Any) -> None:
        if kind == "audio" and self.listener is None:
            self._listen(track, self.muted, self.on_audio)
        elif kind == "video" and self.face is None:
            self.face = VideoReceiver(track, on_frame=self.on_face)
            self.face.start()


class CallAnswer(_Ends):
    """The agent's side of the call.

    Args:
        link: the agent's started link to the broker.
        session: the live session id.
        peer: a fresh :class:`MediaPeer`.
        voice: the agent's voice (a :class:`MicGate` the agent's mute closes).
        camera: the agent's camera track, or ``None`` (the user sees initials).
        speaker: where the user's voice is played.
        on_audio: each received frame of the user's voice.
        on_state: told ``"live"`` once answered and ``"ended"`` at the end.
    """

    def __init__(self, link: Link, session: str, peer: MediaPeer, voice: MicGate, *,
                 camera: Any = None, speaker: Any = None, on_audio: AudioHook | None = None,
                 on_state: StateCallback | None = None) -> None:
        self.link = link
        self.session = session
        self.peer = peer
        self.voice = voice
        self.camera = camera
        self.speaker = speaker
        self.on_audio = on_audio
        self.on_state = on_state
        self.listener: Listener | None = None
        self.code = ""
        self.ended = False
        self._tasks: set[asyncio.Future[Any]] = set()
        peer.on_track = self._on_track

    async def handle(self, msg: m.Signal) -> None:
        """A ``Signal`` of the call from the user; an offer is answered.

        Raises:
            MediaError: if the offer cannot be answered (the user is told ``bye``).
        """
        if msg.session != self.session or msg.line != "call" or self.ended:
            return
        if msg.kind == "offer":
            send: dict[Kind, Any] = {"audio": self.voice}
            if self.camera is not None:
                send["video"] = self.camera
            try:
                self.code = await answer_offer(self.link, self.peer, msg, send)
            except MediaError:
                await self.stop()
                raise
            if self.on_state is not None:
                self.on_state("live")
        elif msg.kind == "bye":
            await self._end(tell=False)

    async def _release(self) -> None:
        self.voice.stop()
        if self.camera is not None:
            self.camera.stop()

    def _on_track(self, kind: Kind, track: Any) -> None:
        if kind == "audio" and self.listener is None:
            self._listen(track, lambda: False, self.on_audio)
