"""The agent's camera: a device, a video file or a still picture, sized for a face.

Only the agent's side ever opens a camera (``assist console --camera``); the
user's side has no code path that does (see :mod:`assist.media.call`).
:func:`open_camera` takes what the agent named:

* a Video4Linux2 device (``/dev/video0``);
* a picture (PNG, JPEG, ...): sent as a still, a couple of frames a second so a
  viewer that joins late or loses a packet gets it again;
* any other file FFmpeg reads (a short clip), played in a loop;
* nothing: no camera; the user's panel shows the agent's initials.

Every frame is scaled to fit :data:`FACE_SIZE` before it is encoded: the face
fills a corner of a terminal, and a smaller picture costs the user's
terminal (and the link) less.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from assist.errors import ConfigError
from assist.media.audio import Source
from assist.media.tracks import TIME_BASE, VIDEO_CLOCK

log = logging.getLogger(__name__)

FACE_SIZE = (320, 240)
"""Largest camera picture sent (width, height): plenty for a panel in a terminal."""
STILL_FPS = 2.0
"""Frames a second of a still picture (it is sent again, not once)."""
PICTURES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm"})


def fit_size(width: int, height: int, box: tuple[int, int] = FACE_SIZE) -> tuple[int, int]:
    """``(width, height)`` scaled down (never up) to fit ``box``, both even, at least 2."""
    scale = min(1.0, box[0] / max(1, width), box[1] / max(1, height))
    return max(2, int(width * scale) & ~1), max(2, int(height * scale) & ~1)


class StillTrack(MediaStreamTrack):
    """A still picture as a video track, a few frames a second.

    Args:
        rgb: the picture, ``(height, width, 3)``; scaled to fit :data:`FACE_SIZE`.
        fps: frames per second.
    """

    kind = "video"

    def __init__(self, rgb: npt.NDArray[np.uint8], fps: float = STILL_FPS) -> None:
        super().__init__()
        height, width = rgb.shape[:2]
        w, h = fit_size(width, height)
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb[..., :3]), format="rgb24")
        self._frame = frame.reformat(width=w, height=h, format="yuv420p")
        self._interval = 1.0 / fps
        self._start = 0.0
        self._count = 0

    async def recv(self) -> VideoFrame:
        """The picture again, on time."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._count == 0:
            self._start = now
        else:
            await asyncio.sleep(max(0.0, self._start + self._count * self._interval - now))
        frame = self._frame.reformat(format="yuv420p")  # a fresh frame object each time
        frame.pts = round(self._count * self._interval * VIDEO_CLOCK)
        frame.time_base = TIME_BASE
        self._count += 1
        return frame


class FaceTrack(MediaStreamTrack):
    """Another video track's frames, scaled to fit :data:`FACE_SIZE`.

    Args:
        source: the camera's or clip's track.
        player: the player that owns ``source`` (stopped with this track).
    """

    kind = "video"

    def __init__(self, source: Any, player: Any = None) -> None:
        super().__init__()
        self.source = source
        self.player = player

    async def recv(self) -> VideoFrame:
        """The source's next frame, scaled down if it is larger than a face needs."""
        frame: VideoFrame = await self.source.recv()
        w, h = fit_size(frame.width, frame.height)
        if (w, h) != (frame.width, frame.height):
            scaled: VideoFrame = frame.reformat(width=w, height=h, format="yuv420p")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base or fractions.Fraction(
                1, VIDEO_CLOCK)
            return scaled
        return frame

    def stop(self) -> None:
        """Stop the source and release the device or file."""
        super().stop()
        self.source.stop()


def read_picture(path: Path) -> npt.NDArray[np.uint8]:
    """The picture at ``path`` as RGB pixels.

    Raises:
        ConfigError: if it cannot be read as a picture.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ConfigError(f"--camera {path}: not a picture this program can read ({exc}); "
                          "give a PNG or JPEG file, a video file or a camera device") from None


def open_camera(spec: str | None) -> Source:
    """Open what ``assist console --camera`` named (see the module's docstring).

    Raises:
        ConfigError: if the device or file does not exist or cannot be read.
    """
    if not spec:
        return Source("none", "camera: off (the user sees your initials)")
    path = Path(spec).expanduser()
    if spec.startswith("/dev/"):
        return _device(spec)
    if not path.is_file():
        raise ConfigError(f"--camera {spec}: no such file or device; give a camera device "
                          "(/dev/video0), a picture or a video file")
    if path.suffix.lower() in PICTURES:
        return Source("file", f"camera: still picture {path.name}",
                      StillTrack(read_picture(path)))
    try:
        player = MediaPlayer(str(path), loop=True)
    except (av.error.FFmpegError, OSError) as exc:
        raise ConfigError(f"--camera {spec}: cannot be played ({exc})") from None
    if player.video is None:
        raise ConfigError(f"--camera {spec}: the file has no video")
    return Source("file", f"camera: clip {path.name} (looped)", FaceTrack(player.video, player))


def _device(device: str) -> Source:
    if not os.path.exists(device):
        raise ConfigError(f"--camera {device}: no such device (is the camera plugged in?)")
    fmt = "video4linux2" if "video4linux2" in av.formats_available else "v4l2"
    if fmt not in av.formats_available:
        raise ConfigError(f"--camera {device}: this PyAV has no Video4Linux2 input; use a "
                          "picture or a video file")
    try:
        player = MediaPlayer(device, format=fmt,
                             options={"framerate": "15", "video_size": "640x480"})
    except (av.error.FFmpegError, OSError) as exc:
        raise ConfigError(f"--camera {device}: cannot be opened ({exc})") from None
    if player.video is None:
        raise ConfigError(f"--camera {device}: gives no video")
    return Source("v4l2", f"camera: {device}", FaceTrack(player.video, player))
