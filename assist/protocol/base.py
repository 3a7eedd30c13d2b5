"""What every protocol message is built of: the base class, bounds and words.

:mod:`assist.protocol.messages` (the messages) and the modules of messages
kept apart from it (:mod:`assist.protocol.invites`) build on these; they are
re-exported from ``messages``, which is how the rest of assist names them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PROTOCOL_VERSION = 2
"""Bumped on incompatible changes; a broker refuses a client of another version."""

MAX_COLS = 1000
"""Widest terminal accepted (columns); the same bound holds for rows."""
MAX_ROWS = 1000
MAX_ID = 64
"""Session ids, grant ids, request tokens."""
MAX_NAME = 128
"""User, agent and broker names, host names, client descriptions."""
MAX_TOPIC = 1000
"""A topic as sent; the broker keeps the first 200 characters on one line."""
MAX_TEXT = 4000
"""A chat line as sent; the broker keeps 2000 characters."""
MAX_NOTE = 1000
"""Notes, root causes, reasons and error messages."""
MAX_OUTPUT = 512 * 1024
"""Raw terminal bytes in one message (base64 keeps it under the 1 MiB line limit)."""
MAX_SNAPSHOT = 700 * 1024
"""Bytes of one screen picture."""
MAX_KEYS = 64 * 1024
"""Keystroke bytes in one message."""
MAX_SDP = 64 * 1024
"""One WebRTC session description."""
MAX_LIST = 256
"""Ids in one list (grants to revoke, marks to clear), tags, servers."""
PAGE = 500
"""Queue entries in one message (pages and deltas); a page of 500 long topics
stays far below the 1 MiB limit."""
MAX_COUNT = 10_000_000
"""Positions, counts and totals."""

ID_PATTERN = "^[A-Za-z0-9_.:-]*$"
"""What an id may hold: an id is echoed in replies, errors and logs, so it
carries no space, control or markup character."""
Id = Annotated[str, msgspec.Meta(max_length=MAX_ID, pattern=ID_PATTERN)]
MarkId = Annotated[str, msgspec.Meta(max_length=40, pattern=ID_PATTERN)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Note = Annotated[str, msgspec.Meta(max_length=MAX_NOTE)]
Cols = Annotated[int, msgspec.Meta(ge=1, le=MAX_COLS)]
Rows = Annotated[int, msgspec.Meta(ge=1, le=MAX_ROWS)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Coord = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
Line = Annotated[int, msgspec.Meta(ge=-(2**40), le=2**40)]

Role = Literal["user", "agent"]
AgentStatus = Literal["available", "away", "busy"]
Availability = Literal["available", "away"]
"""What an agent may say it is (``busy`` follows from holding a session)."""
Scope = Literal["annotate", "control", "run", "mic"]
"""What a grant allows: draw on the user's screen, type, run scripted steps, hear
the user's microphone."""
VerifyMethod = Literal["key", "totp", "attest"]
SignalKind = Literal["offer", "answer", "bye", "pause", "resume"]
MediaLine = Literal["screen", "call"]
"""Which media connection a signal is for: the desktop share, or the voice and face call."""
AnnotationKind = Literal["box", "arrow", "highlight", "label"]
HiddenWhy = Literal["secret", "paused"]
"""Why the user's screen is withheld: a secret is read, or the user paused sharing."""
Surface = Literal["terminal", "desktop"]
"""Where a mark is drawn: the user's terminal (cells) or shared desktop (pixels)."""


class Msg(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", omit_defaults=True):
    """Base of all messages."""

    rid: Annotated[int, msgspec.Meta(ge=0, le=2**53)] = 0
