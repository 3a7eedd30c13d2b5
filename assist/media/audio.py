"""Voice sources, and where received voice is played.

Each opener tries the real devices first and says plainly what it ended up
with, because "the agent cannot hear me" is otherwise a guessing game:

* voice: PulseAudio, then ALSA (through FFmpeg's input devices, when this
  PyAV build has them and the device opens), then a file if one was given,
  else silence;
* speaker: PulseAudio, then ALSA, else received audio is discarded.

The result's :attr:`Source.description` is meant for the person ("voice:
PulseAudio default source", "voice: silence (no PulseAudio or ALSA device)"). The agent's camera is
:mod:`assist.media.camera`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
from aiortc.contrib.media import MediaBlackhole, MediaPlayer, MediaRecorder
from aiortc.mediastreams import AudioStreamTrack

log = logging.getLogger(__name__)

SourceKind = Literal["pulse", "alsa", "v4l2", "file", "silence", "none"]
AUDIO_DEVICES: tuple[str, ...] = ("pulse", "alsa")


@dataclass
class Source:
    """An opened media source.

    Attributes:
        kind: which backend is in use.
        description: one line for the person: what is sent, and why not better.
        track: the aiortc track, or ``None`` when there is nothing to send.
        tried: why better backends were skipped, for logs and ``--verbose``.
    """

    kind: SourceKind
    description: str
    track: Any = None
    tried: list[str] = field(default_factory=list)
    _player: Any = None

    def close(self) -> None:
        """Stop the track and release the device."""
        if self.track is not None:
            self.track.stop()


def _device_available(fmt: str) -> str | None:
    """``None`` if ``fmt`` looks usable here, else why not."""
    if fmt not in av.formats_available:
        return f"{fmt}: not built into this PyAV"
    if fmt == "alsa" and not Path("/dev/snd").exists():
        return "alsa: no /dev/snd"
    return None


def _open_player(file: str, fmt: str | None, kind: str, options: dict[str, str] | None = None
                 ) -> tuple[Any, Any] | str:
    try:
        player = MediaPlayer(file, format=fmt, options=options or {})
    except (av.error.FFmpegError, OSError) as exc:
        return f"{fmt or file}: {exc}"
    track = player.audio if kind == "audio" else player.video
    if track is None:
        return f"{fmt or file}: has no {kind}"
    return player, track


def open_voice(file: Path | None = None, devices: Sequence[str] = AUDIO_DEVICES) -> Source:
    """Open the microphone (PulseAudio, then ALSA), else ``file``, else silence."""
    tried: list[str] = []
    for fmt in devices:
        why = _device_available(fmt)
        if why is not None:
            tried.append(why)
            continue
        opened = _open_player("default", fmt, "audio")
        if isinstance(opened, str):
            tried.append(opened)
            continue
        player, track = opened
        name = "PulseAudio" if fmt == "pulse" else "ALSA"
        return Source(fmt, f"voice: {name} default input", track, tried, player)  # type: ignore[arg-type]
    if file is not None:
        from_file = _file_source(file, "audio", "voice: file {} (no audio device)", tried)
        if from_file is not None:
            return from_file
    log.info("no audio input: %s", "; ".join(tried))
    return Source("silence", "voice: silence (no PulseAudio or ALSA input found)",
                  AudioStreamTrack(), tried)


def _file_source(file: Path, kind: str, description: str, tried: list[str]) -> Source | None:
    """A source playing ``file`` instead of a device (``None``, noted in ``tried``, if not)."""
    opened = _open_player(str(file), None, kind)
    if isinstance(opened, str):
        tried.append(opened)
        return None
    player, track = opened
    return Source("file", description.format(file.name), track, tried, player)


def open_speaker(devices: Sequence[str] = AUDIO_DEVICES) -> tuple[Any, str]:
    """A sink for received voice: ``(recorder, description)``.

    The recorder has aiortc's ``addTrack``/``start``/``stop`` interface; without a
    device it discards the audio (and says so).
    """
    tried: list[str] = []
    for fmt in devices:
        why = _device_available(fmt)
        if why is not None:
            tried.append(why)
            continue
        try:
            recorder = MediaRecorder("default", format=fmt)
        except (av.error.FFmpegError, OSError) as exc:
            tried.append(f"{fmt}: {exc}")
            continue
        return recorder, f"speaker: {'PulseAudio' if fmt == 'pulse' else 'ALSA'} default output"
    log.info("no audio output: %s", "; ".join(tried))
    return MediaBlackhole(), "speaker: none (no PulseAudio or ALSA output)"
