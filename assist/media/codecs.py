"""Video codec choice and the bitrate the screen share runs at.

aiortc's encoders clamp their target bitrate to module constants tuned for
camera video: VP8 500 kbit/s start, 250 kbit/s floor, 1.5 Mbit/s ceiling; H264
1 / 0.5 / 3 Mbit/s. A 1080p desktop at 1.5 Mbit/s smears small text into
mush for a second after every change (scroll, new window), so the share
raises them (:data:`SCREEN_BITRATES`): roughly 3x aiortc's, sized for a
1080p desktop of small text. They are a starting judgement, not a tuned
optimum; ``python -m bench.media`` shows what is actually sent (1-2.5
Mbit/s for a desktop with a moving text box, since unchanged areas cost
little), so the higher ceiling only costs bandwidth while much of the
screen changes, when legibility matters most.

The constants are module globals of aiortc, read each time an encoder is
created or receives a bitrate estimate (REMB), so :func:`apply_bitrate`
changes them for the whole process. Only the media layer encodes video, and
every peer of one process wants the same policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiortc.codecs.h264
import aiortc.codecs.vpx
from aiortc import RTCRtpSender

from assist.config import CODECS, Codec
from assist.media.errors import MediaUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bitrate:
    """Target bitrate of a video encoder, in bit/s.

    Attributes:
        start: rate of the first frames, before any receiver estimate.
        floor: lowest rate a congestion estimate may push the encoder to.
        ceiling: highest rate; bursts after screen changes use it.
    """

    start: int
    floor: int
    ceiling: int


SCREEN_BITRATES: dict[Codec, Bitrate] = {
    "VP8": Bitrate(start=4_000_000, floor=1_500_000, ceiling=8_000_000),
    # x264 runs baseline profile (no B-frames) under zerolatency: give it some headroom.
    "H264": Bitrate(start=5_000_000, floor=2_000_000, ceiling=10_000_000),
}
"""Screen-share bitrates per codec (aiortc defaults: VP8 0.5/0.25/1.5, H264 1/0.5/3 Mbit/s)."""

_MODULES: dict[Codec, Any] = {"VP8": aiortc.codecs.vpx, "H264": aiortc.codecs.h264}


def apply_bitrate(codec: Codec, rate: Bitrate | None = None) -> Bitrate:
    """Set aiortc's bitrate bounds for ``codec`` (process-wide) and return them."""
    rate = rate or SCREEN_BITRATES[codec]
    if not 0 < rate.floor <= rate.start <= rate.ceiling:
        raise ValueError(f"bitrate bounds out of order: {rate}")
    module = _MODULES[codec]
    module.DEFAULT_BITRATE = rate.start
    module.MIN_BITRATE = rate.floor
    module.MAX_BITRATE = rate.ceiling
    log.debug("%s bitrate start %d floor %d ceiling %d bit/s", codec, rate.start,
              rate.floor, rate.ceiling)
    return rate


def preferences(codec: Codec) -> list[Any]:
    """aiortc codec capabilities that pin a video transceiver to ``codec``.

    The retransmission (``video/rtx``) entries are kept: without them lost
    packets could only be repaired by a new keyframe.

    Raises:
        MediaUnavailable: if this aiortc build cannot encode ``codec``.
    """
    if codec not in CODECS:
        raise MediaUnavailable(f"unknown video codec {codec!r}; use one of {', '.join(CODECS)}")
    wanted = f"video/{codec}".lower()
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == wanted]
    if not chosen:
        raise MediaUnavailable(f"this installation cannot encode {codec}; "
                               f"choose another codec ({', '.join(CODECS)})")
    return chosen + [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
