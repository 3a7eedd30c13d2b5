"""Still images of a shared screen: PNG files from RGB frames.

PNG is encoded with FFmpeg's ``png`` encoder through PyAV, which the media
layer already depends on (no imaging library needed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from assist.files import write_private
from assist.media.errors import MediaError

log = logging.getLogger(__name__)


def encode_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of an ``(h, w, 3)`` RGB image."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB array, got shape {rgb.shape}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, "rgb24"
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def save_png(rgb: npt.NDArray[np.uint8], path: Path) -> Path:
    """Write ``rgb`` to ``path`` as PNG and return the path.

    A picture of someone's desktop is theirs: the file is readable by its owner
    only from its first byte, like a recording (a new folder is 0700 too).

    Raises:
        MediaError: if the file cannot be written.
    """
    data = encode_png(rgb)
    try:
        write_private(path, data)
    except OSError as exc:
        raise MediaError(f"cannot save the snapshot to {path}: {exc.strerror}; "
                         "choose another folder") from None
    log.debug("snapshot %dx%d saved", rgb.shape[1], rgb.shape[0])
    return path
