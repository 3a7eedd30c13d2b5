"""The call of one session, for the apps: the user hears and sees the agent.

Headless glue between the apps and :mod:`assist.media.call`, as
:mod:`assist.client.desktop` is for the desktop share: :class:`UserCall`
runs the user's side (offered as soon as the agent is there), and
:class:`AgentCall` the console's (it answers). Both keep what a person must
see as plain attributes (state, verification code, which devices are used,
the last error), report a change through ``on_change`` and turn every
failure into a message: a call that cannot be made never ends the session.

The user's microphone is heard only under a ``mic`` grant the user gave in
this session: ``mic_allowed`` is asked before every frame, and the
microphone is not even opened before it says yes.

Importing this module does not import aiortc: the media stack is loaded in a
thread when a call starts, so the shell is never held up by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assist.client.media_side import AnsweringSide, MediaSide, nothing
from assist.errors import AssistError
from assist.protocol import messages as m

if TYPE_CHECKING:
    from assist.client.link import Link
    from assist.media.audio import Source
    from assist.media.call import AudioHook, CallAnswer, CallOffer, MicGate
    from assist.media.tracks import ReceivedFrame

log = logging.getLogger(__name__)

CallState = Literal["starting", "live", "failed", "ended"]
FaceSink = Callable[["ReceivedFrame"], object]


async def load_media() -> None:
    """Import the media stack in a thread (it takes a few tenths of a second)."""
    await asyncio.to_thread(importlib.import_module, "assist.media.call")


class _CallSide(MediaSide):
    """What both ends of a call have besides a state: a mute."""

    muted: bool
    role = "call"

    def toggle_mute(self) -> bool:
        """Mute, or unmute; return whether muted now (effective with the next frame)."""
        self.muted = not self.muted
        self.on_change()
        return self.muted


def _voice(audio: tuple[str, ...] | None, file: Path | None) -> Callable[[], Source]:
    """Opens this side's microphone (or the file, or silence), when called."""
    def open_source() -> Source:
        from assist.media.audio import AUDIO_DEVICES, open_voice

        return open_voice(file, AUDIO_DEVICES if audio is None else audio)
    return open_source


async def _speaker(audio: tuple[str, ...] | None) -> tuple[Any, str]:
    from assist.media.audio import AUDIO_DEVICES, open_speaker

    # Opening a sound device can block for a while: not on the loop.
    return await asyncio.to_thread(open_speaker, AUDIO_DEVICES if audio is None else audio)


class UserCall(_CallSide):
    """The user's side of the call.

    Args:
        link: the user's started link to the broker.
        info: the live session (its ``ice_servers`` are used).
        host_addresses: ICE host-candidate addresses.
        mic_allowed: whether the user's voice may be heard now (the mic grant is
            live and the session is not paused); asked before every frame.
        audio: the sound systems to try (``None``: all).
        voice_file: sent as the user's voice (when allowed) if no microphone opens.
        on_change: called after every change of what is shown.
        on_face: each decoded picture of the agent's camera (``None``: no face is
            shown, and none is asked for).
        on_audio: each received frame of the agent's voice (tests, benchmarks).
    """

    def __init__(self, link: Link, info: m.SessionInfo, host_addresses: tuple[str, ...] | None,
                 *, mic_allowed: Callable[[], bool], audio: tuple[str, ...] | None = None,
                 voice_file: Path | None = None, on_change: Callable[[], None] = nothing,
                 on_face: FaceSink | None = None, on_audio: AudioHook | None = None) -> None:
        self.link = link
        self.info = info
        self.host_addresses = host_addresses
        self.mic_allowed = mic_allowed
        self.audio = audio
        self.voice_file = voice_file
        self.on_change = on_change
        self.on_face = on_face
        self.on_audio = on_audio
        self.state: CallState = "starting"
        self.code = ""
        self.error = ""
        self.speaker = ""
        self.muted = False
        self.faces = 0
        """Pictures of the agent's camera received."""
        self.call: CallOffer | None = None
        self.mic: MicGate | None = None
        self._stopped = False

    @property
    def speaking(self) -> bool:
        """The agent is speaking (their voice is above the speaking level)."""
        listener = self.call.listener if self.call is not None else None
        return listener is not None and listener.speaking and not self.muted

    @property
    def hearing(self) -> bool:
        """The user's microphone is open and heard by the agent now."""
        return self.mic is not None and self.mic.live

    def _allowed(self) -> bool:
        return not self.muted and not self._stopped and self.mic_allowed()

    async def start(self, timeout: float = 15.0) -> bool:
        """Offer the call and wait for the agent; ``False`` (and :attr:`error`) on failure."""
        await load_media()
        from assist.media.call import CallOffer, MicGate
        from assist.media.peer import MediaPeer

        try:
            speaker, self.speaker = await _speaker(self.audio)
            if self._stopped:
                return False
            self.mic = MicGate(self._allowed, _voice(self.audio, self.voice_file))
            peer = MediaPeer(ice_servers=self.info.ice_servers,
                             host_addresses=self.host_addresses)
            self.call = CallOffer(self.link, self.info.session, peer, self.mic,
                                  speaker=speaker, muted=lambda: self.muted,
                                  on_face=self._face if self.on_face else None,
                                  on_audio=self.on_audio,
                                  on_state=self._ended)
            self.on_change()
            self.code = await self.call.start(timeout)
        except AssistError as exc:
            await self._hang_up()
            if not self._stopped:
                self._set("failed", exc.message)
            return False
        if self._stopped:
            await self._hang_up()
            return False
        if not self.call.ended:
            self._set("live")
        return True

    def _face(self, frame: ReceivedFrame) -> None:
        self.faces += 1
        if self.on_face is not None:
            self.on_face(frame)

    async def handle(self, msg: m.Signal) -> None:
        """A ``Signal`` of the call from the agent (a hang-up)."""
        if self.call is not None and msg.session == self.info.session:
            await self.call.handle(msg)

    def toggle_mute(self) -> bool:
        """Mute both ways, or unmute; the microphone closes at once when muted."""
        muted = super().toggle_mute()
        self.permission_changed()
        return muted

    def permission_changed(self) -> None:
        """The mic grant came or went: the microphone closes at once if it may not be heard."""
        if self.mic is not None and not self._allowed():
            self.mic.shut()
        self.on_change()

    async def stop(self) -> None:
        """Hang up at once (idempotent); the agent is told."""
        self._stopped = True
        if self.mic is not None:
            self.mic.shut()  # before anything that waits
        await self._hang_up()
        if self.state not in ("failed", "ended"):
            self._set("ended")

    async def _hang_up(self) -> None:
        if self.call is not None:
            await self.call.stop()

    def describe(self) -> str:
        """What the user should know about the call, in a few lines."""
        if self.state == "failed":
            return f"Voice: not connected: {self.error}"
        if self.state == "ended":
            return "Voice: call ended."
        if self.state == "starting":
            return "Voice: calling the agent..."
        device = self.speaker.removeprefix("speaker: ")
        sound = ("muted (F12 unmutes)" if self.muted else
                 f"no sound here, the agent is not heard {device.removeprefix('none ')}"
                 if device.startswith("none") else f"you hear the agent ({device})")
        if self.hearing:
            mic = "the agent hears you" + (f" ({self.mic.description.removeprefix('voice: ')})"
                                            if self.mic and self.mic.description else "")
        elif self.mic_allowed() and not self.muted:
            mic = "your microphone is opening..."
        else:
            mic = "the agent cannot hear you"
        return f"Voice, code {self.code}: {sound}; {mic}."


class AgentCall(_CallSide, AnsweringSide):
    """The agent's side of the call: answers the user's offer with voice and camera.

    Args:
        link: the agent's started link to the broker.
        info: the live session.
        host_addresses: ICE host-candidate addresses.
        camera: what ``--camera`` named (``""``: off, the user sees initials).
        audio: the sound systems to try (``None``: all).
        voice_file: sent as the agent's voice if no microphone opens.
        on_change: called after every change of what is shown.
        on_audio: each received frame of the user's voice (tests, benchmarks).
    """

    def __init__(self, link: Link, info: m.SessionInfo, host_addresses: tuple[str, ...] | None,
                 *, camera: str = "", audio: tuple[str, ...] | None = None,
                 voice_file: Path | None = None, on_change: Callable[[], None] = nothing,
                 on_audio: AudioHook | None = None) -> None:
        self.link = link
        self.info = info
        self.host_addresses = host_addresses
        self.camera = camera
        self.audio = audio
        self.voice_file = voice_file
        self.on_change = on_change
        self.on_audio = on_audio
        self.state: CallState = "starting"
        self.code = ""
        self.error = ""
        self.speaker = ""
        self.face = ""
        self.muted = False
        self.call: CallAnswer | None = None
        self.voice: MicGate | None = None
        self._lock = asyncio.Lock()

    @property
    def speaking(self) -> bool:
        """The user's voice is above the speaking level (only under their mic grant)."""
        listener = self.call.listener if self.call is not None else None
        return listener is not None and listener.speaking

    async def _relay(self, msg: m.Signal) -> None:
        if self.call is not None:
            await self.call.handle(msg)

    async def _answer(self, offer: m.Signal) -> None:
        await load_media()
        from assist.media.call import CallAnswer, MicGate
        from assist.media.camera import open_camera
        from assist.media.peer import MediaPeer

        await self._close()  # a new offer replaces an earlier call
        self.error, self.code = "", ""
        self._set("starting")
        speaker, self.speaker = await _speaker(self.audio)
        camera: Source | None = None
        try:
            # No camera is opened for a user whose side shows no face (``--no-tui``).
            wants_face = "face" in offer.media.split(",")
            camera = await asyncio.to_thread(open_camera, self.camera if wants_face else "")
            peer = MediaPeer(ice_servers=self.info.ice_servers,
                             host_addresses=self.host_addresses)
        except AssistError:
            # What opened before the failure is released: no device stays held.
            if camera is not None:
                camera.close()
            with contextlib.suppress(Exception):
                await speaker.stop()
            raise
        self.face = camera.description
        self.voice = MicGate(lambda: not self.muted, _voice(self.audio, self.voice_file))
        self.call = CallAnswer(self.link, self.info.session, peer, self.voice,
                               camera=camera.track, speaker=speaker, on_audio=self.on_audio,
                               on_state=self._ended)
        await self.call.handle(offer)
        self.code = self.call.code
        self._set("live")

    async def _close(self) -> None:
        call, self.call = self.call, None
        if call is not None:
            with contextlib.suppress(AssistError):
                await call.stop()

    def describe(self, hears_user: bool) -> str:
        """The call in a line or two of plain text, for the agent.

        Args:
            hears_user: the user granted their microphone (from the session's grants).
        """
        if self.state == "failed":
            return f"voice: failed: {self.error}"
        if self.state in ("starting", "ended"):
            return f"voice: {'connecting...' if self.state == 'starting' else 'call ended'}"
        mine = self.voice.description if self.voice and self.voice.description else ""
        mine = mine.removeprefix("voice: ")
        you = "muted (F12)" if self.muted else \
            "the user hears you" + (f": {mine}" if mine else "")
        them = ("you hear the user" + (" (speaking)" if self.speaking else "")
                if hears_user else "the user's microphone is off (F1 asks for it)")
        return f"voice: code {self.code} · {you}\n{them} · {self.speaker} · {self.face}"
