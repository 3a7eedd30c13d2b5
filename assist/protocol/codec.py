"""Encode and decode protocol messages as JSON lines.

A message is one line of compact JSON terminated by ``\\n``. Lines over
:data:`MAX_MESSAGE_BYTES` are refused, and so is a document nested deeper
than the decoder's recursion allows (``too-deep``). Decoding never raises
anything but :class:`~assist.errors.ProtocolError` (or its subclass
``MessageTooLarge``), so a peer can always answer a bad line with an
``Error`` reply and go on.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import msgspec

from assist.errors import MessageTooLarge, ProtocolError
from assist.protocol.messages import Message, Msg

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest accepted control message, newline included (1 MiB)."""

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
_raw_decoder = msgspec.json.Decoder()
_RID = re.compile(rb'"rid":\s*(\d{1,15})')

KNOWN_TYPES: frozenset[str] = frozenset(
    typing.cast(str, cls.__struct_config__.tag) for cls in typing.get_args(Message)
)
"""Every ``t`` value this version of the protocol understands."""


class DecodeFailure(ProtocolError):
    """A line that could not be decoded.

    Attributes:
        rid: the request id found in the line, if any, so the error reply can
            be matched to the request by the sender.
    """

    def __init__(self, message: str, code: str, rid: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.rid = rid


def encode(msg: Msg) -> bytes:
    """Return ``msg`` as one JSON line.

    Raises:
        MessageTooLarge: if the encoded line exceeds the size limit.
    """
    line = _encoder.encode(msg) + b"\n"
    if len(line) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"message of {len(line)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit"
        )
    return line


def decode(line: bytes) -> Message:
    """Decode one JSON line (with or without its newline) into a message.

    Raises:
        MessageTooLarge: if the line exceeds the size limit.
        DecodeFailure: if the line is not JSON, has no known ``t``, or its
            fields do not match the message type. ``code`` tells which.
    """
    if len(line) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"message of {len(line)} bytes exceeds the size limit")
    try:
        return _decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _explain(line, exc) from None
    except RecursionError:
        raise _too_deep(line) from None


def _too_deep(line: bytes) -> DecodeFailure:
    """A document nested past the decoder's recursion limit (a typed error, never a crash)."""
    found = _RID.search(line[:4096])
    rid = int(found.group(1)) if found else 0
    return DecodeFailure("message is nested too deeply", "too-deep", rid)


def _explain(line: bytes, exc: Exception) -> DecodeFailure:
    """Turn a msgspec failure into a precise :class:`DecodeFailure`."""
    try:
        raw: Any = _raw_decoder.decode(line)
    except msgspec.DecodeError:
        return DecodeFailure("message is not valid JSON", "malformed")
    except RecursionError:
        return _too_deep(line)
    if not isinstance(raw, dict):
        return DecodeFailure("message is not a JSON object", "malformed")
    rid = raw.get("rid")
    rid = rid if isinstance(rid, int) and not isinstance(rid, bool) else 0
    kind = raw.get("t")
    if not isinstance(kind, str):
        return DecodeFailure("message has no type field 't'", "malformed", rid)
    if kind not in KNOWN_TYPES:
        return DecodeFailure(f"unknown message type {kind[:40]!r}", "unknown-type", rid)
    return DecodeFailure(f"invalid {kind!r} message: {exc}", "invalid", rid)


class LineBuffer:
    """Split a byte stream into message lines, enforcing the size limit.

    Feed it whatever the transport delivers; it returns complete lines and,
    for a line that grows past the limit, one :class:`MessageTooLarge` in its
    place (the rest of that line is skipped up to the next newline, so the
    stream stays usable).
    """

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | MessageTooLarge]:
        """Add ``data``; return the lines (or size errors) it completes."""
        out: list[bytes | MessageTooLarge] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:], out)
                return out
            if self._discarding:
                self._discarding = False
            else:
                self._parts.append(data[start:end])
                line = b"".join(self._parts)
                if len(line) + 1 > self._limit:
                    out.append(self._too_large())
                elif line.strip():
                    out.append(line)
            self._parts.clear()
            self._size = 0
            start = end + 1

    def _keep(self, tail: bytes, out: list[bytes | MessageTooLarge]) -> None:
        if self._discarding or not tail:
            return
        self._parts.append(tail)
        self._size += len(tail)
        if self._size + 1 > self._limit:
            out.append(self._too_large())
            self._parts.clear()
            self._size = 0
            self._discarding = True

    def _too_large(self) -> MessageTooLarge:
        return MessageTooLarge(f"message exceeds the {self._limit}-byte limit; skipped")
