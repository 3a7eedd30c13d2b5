"""Errors of the media layer (desktop sharing, voice, camera).

They belong under :class:`assist.errors.AssistError` like every error a person
may see; library errors from aiortc, av and aioice are converted into these
where they enter the program.

::

    AssistError
    └── MediaError            WebRTC negotiation or transport failed
        └── MediaUnavailable  a device or codec is missing on this machine
"""

from __future__ import annotations

from assist.errors import AssistError


class MediaError(AssistError):
    """Negotiating or running the media connection failed."""

    code = "media"


class MediaUnavailable(MediaError):
    """A device or codec the media layer needs is missing on this machine."""

    code = "media-unavailable"
