"""Errors of the media layer (desktop sharing, voice, camera), re-exported.

They live in :mod:`assist.errors` with the rest of the one exception tree
(see the diagram there); this module keeps the media layer's import path
working. Library errors from aiortc, av and aioice are converted into these
where they enter the program.
"""

from __future__ import annotations

from assist.errors import CaptureError, MediaError, MediaUnavailable

__all__ = ["CaptureError", "MediaError", "MediaUnavailable"]
