"""Messages of trust: verifying who the user is, the user's grants, and what acts
under them (keystrokes, annotations), and the user's output being withheld.

The user's machine decides every grant; the broker relays, mirrors and
audits, and refuses what no live grant allows before the user's machine
checks again.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from assist.protocol.base import (
    MAX_ID,
    MAX_KEYS,
    MAX_LIST,
    AnnotationKind,
    Coord,
    HiddenWhy,
    Id,
    Line,
    MarkId,
    Msg,
    Name,
    Note,
    Scope,
    Surface,
    VerifyMethod,
)

# -- trust: identity verification ----------------------------------------------


class Verify(Msg, tag="verify", frozen=True):
    """A -> B: verify the user's identity by ``method``; ``note`` is the attestation text."""

    session: Id
    method: VerifyMethod
    note: Note = ""


class AskCode(Msg, tag="ask-code", frozen=True):
    """B -> U: the agent asks for the current code of the user's authenticator app."""

    session: Id
    agent: Name


class Code(Msg, tag="code", frozen=True):
    """U -> B: the authenticator code the user typed (never logged, never stored)."""

    session: Id
    code: Annotated[str, msgspec.Meta(max_length=MAX_ID)]


class Verified(Msg, tag="verified", frozen=True):
    """B -> U/A: the outcome of a verification."""

    session: Id
    method: VerifyMethod
    ok: bool
    message: Note = ""


# -- trust: grants, keys, annotations ----------------------------------------------


class AskGrant(Msg, tag="ask-grant", frozen=True):
    """A -> B -> U: the agent asks for a permission; ``seconds`` 0 means until revoked."""

    session: Id
    scope: Scope
    seconds: Annotated[float, msgspec.Meta(ge=0, le=24 * 3600)] = 0.0
    agent: Name = ""


class GrantAnswer(Msg, tag="grant", frozen=True):
    """U -> B -> A: the user's decision; ``grant`` is the id later messages must carry."""

    session: Id
    scope: Scope
    allowed: bool
    grant: Id = ""
    expires_at: float | None = None
    reason: Note = ""
    """Why it was refused without asking the user (e.g. ``not-verified``), if so."""
    restored: bool = False
    """A grant the user gave earlier in this session, announced again after a reconnect."""


class Revoke(Msg, tag="revoke", frozen=True):
    """U -> B -> A: the user revoked grants (all of them when ``grants`` is empty)."""

    session: Id
    grants: Annotated[tuple[Id, ...], msgspec.Meta(max_length=MAX_LIST)] = ()
    reason: Note = "revoked by the user"


class Keys(Msg, tag="keys", frozen=True):
    """A -> B -> U: keystrokes for the user's terminal under ``grant``.

    The grant is a ``control`` or ``run`` grant. An agent may leave ``grant``
    empty: the broker fills in the newest live one (the user's machine still
    checks it).
    """

    session: Id
    grant: Id
    data: Annotated[bytes, msgspec.Meta(max_length=MAX_KEYS)]
    agent: Name = ""


class KeysRefused(Msg, tag="keys-refused", frozen=True):
    """U -> B -> A: the user's client refused keystrokes; ``reason`` says why."""

    session: Id
    grant: Id
    reason: Note


class Annotation(msgspec.Struct, frozen=True, kw_only=True):
    """A mark the agent draws on the user's screen; never typed into the shell.

    Terminal coordinates are cells; ``line`` counts lines since the session
    started (scrolled-off lines included), so the mark stays on its text.
    Desktop coordinates are pixels of the shared desktop.
    """

    id: MarkId
    kind: AnnotationKind
    x: Coord
    line: Line
    x2: Coord = 0
    line2: Line = 0
    text: Annotated[str, msgspec.Meta(max_length=200)] = ""
    ttl: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    surface: Surface = "terminal"
    relative: bool = False
    """``line``/``line2`` are rows of the user's screen as it is when the mark arrives
    (for scripts, which do not track scrolling)."""


class Annotate(Msg, tag="annotate", frozen=True):
    """A -> B -> U: draw ``annotation`` under an ``annotate`` grant."""

    session: Id
    grant: Id
    annotation: Annotation
    agent: Name = ""


class ClearAnnotations(Msg, tag="clear-annotations", frozen=True):
    """U/A -> B -> A/U: remove annotations (all when ``ids`` is empty)."""

    session: Id
    ids: Annotated[tuple[MarkId, ...], msgspec.Meta(max_length=MAX_LIST)] = ()


class Hidden(Msg, tag="hidden", frozen=True):
    """U -> B -> A: the user's output is withheld (``on``) or shared again.

    ``why``: ``secret``, the terminal reads a secret (echo off); ``paused``,
    the user paused sharing (privacy pause). Either way nothing is sent or
    recorded and the agent's keys are refused until ``on`` is false.
    """

    session: Id
    on: bool
    why: HiddenWhy = "secret"
