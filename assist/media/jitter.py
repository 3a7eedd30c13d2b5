"""A video jitter buffer that releases a frame as soon as its last packet arrives.

aiortc's ``JitterBuffer`` hands a video frame to the decoder only when the
first packet of the *next* frame arrives, because that is when it sees the
timestamp change. For a screen share at 30 fps that adds a whole frame
interval (33 ms, more when the screen is idle and frames are sparse) to
every frame's latency. RTP marks the last packet of each video frame with
the marker bit (aiortc's sender sets it), so this buffer releases a frame
when the contiguous run of packets from the buffer's origin ends in a
marked packet. If the marked packet was lost, the timestamp change still
releases the frame as before, so nothing is ever held longer than aiortc
would hold it.

aiortc creates the buffer privately in ``RTCRtpReceiver.__init__``;
:func:`install` swaps it on a receiver before any packet arrived. Checked
against aiortc 1.9-1.16; if the private attribute ever disappears the
receiver keeps aiortc's buffer (only latency changes).
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

log = logging.getLogger(__name__)

_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
VIDEO_CAPACITY = 512
"""Packets held, as aiortc uses for video."""


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, releasing frames on the RTP marker bit."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        assert self._origin is not None
        packets: list[Any] = []
        timestamp = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                return None  # a gap: wait for the missing packet (or NACK repair)
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # The previous frame ended without a marker we saw: release it
                # now, exactly as aiortc would.
                self.remove(count)
                return _frame(packets, timestamp)
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return _frame(packets, timestamp)
        return None


def _frame(packets: list[Any], timestamp: int) -> JitterFrame:
    return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)


def install(receiver: Any) -> bool:
    """Give a video ``RTCRtpReceiver`` the marker-aware buffer; ``False`` if not possible."""
    current = getattr(receiver, _ATTRIBUTE, None)
    if isinstance(current, MarkerJitterBuffer):
        return True
    if not isinstance(current, JitterBuffer) or current._origin is not None:
        log.debug("keeping aiortc's jitter buffer (unknown layout or already receiving)")
        return False
    setattr(receiver, _ATTRIBUTE, MarkerJitterBuffer(capacity=VIDEO_CAPACITY, is_video=True))
    return True
