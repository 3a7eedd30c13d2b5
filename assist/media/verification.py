"""The short verification code both sides read aloud.

WebRTC media is encrypted with keys agreed in a DTLS handshake whose
certificates are pinned by the fingerprints in the SDP offer and answer. If
someone in the middle (a hostile broker, say) swapped the SDPs, each side
would see a different fingerprint for "the other side". So each side hashes
the pair of fingerprints it saw, plus the session id, into a short code: the
person and the agent read their codes to each other, and equal codes mean
the media goes straight between them.

The code is order-independent (both sides sort the two fingerprint sets), so
offerer and answerer compute the same code from (offer, answer). Pure: no
aiortc, no I/O.
"""

from __future__ import annotations

import hashlib
import re

from assist.media.errors import MediaError

CODE_DIGITS = 6
_DOMAIN = b"assist verification code v1\x00"
_FINGERPRINT = re.compile(r"^a=fingerprint:\s*(\S+)\s+([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


def fingerprints(sdp: str) -> tuple[str, ...]:
    """The DTLS certificate fingerprints in ``sdp``, normalised and sorted.

    Each is ``"<hash> <HEX:HEX:...>"`` with the hash name lower case and the
    hex upper case, so formatting differences never change the code.

    Raises:
        MediaError: if the SDP has no fingerprint (it could not be verified).
    """
    found = {f"{algo.lower()} {value.upper()}" for algo, value in _FINGERPRINT.findall(sdp)}
    if not found:
        raise MediaError("the media offer carries no DTLS fingerprint, so it cannot be "
                         "verified; ask the other side to update assist")
    return tuple(sorted(found))


def code_from_fingerprints(session: str, side_a: tuple[str, ...], side_b: tuple[str, ...]) -> str:
    """The code for a session whose two sides have these fingerprints."""
    first, second = sorted(["\n".join(side_a), "\n".join(side_b)])
    digest = hashlib.sha256(
        _DOMAIN + session.encode() + b"\x00" + first.encode() + b"\x00" + second.encode()
    ).digest()
    number = int.from_bytes(digest[:8], "big") % 10**CODE_DIGITS
    text = f"{number:0{CODE_DIGITS}d}"
    return f"{text[:3]} {text[3:]}"


def verification_code(session: str, local_sdp: str, remote_sdp: str) -> str:
    """The code to show: six digits as ``"123 456"``, same on both sides.

    Raises:
        MediaError: if either SDP lacks a fingerprint.
    """
    return code_from_fingerprints(session, fingerprints(local_sdp), fingerprints(remote_sdp))
