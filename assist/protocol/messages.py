"""Versioned, typed protocol messages.

Every message is a frozen :mod:`msgspec` struct tagged by its ``t`` field and
carries an optional request id ``rid``: a reply (``Ok``, ``Error`` or a typed
answer) echoes the ``rid`` of the request it answers, so clients can match
replies to requests while events (``rid == 0``) flow in between.

Direction is noted on each class: U = user client, A = agent client,
B = broker.
"""

from __future__ import annotations

from typing import Literal

import msgspec

PROTOCOL_VERSION = 1
"""Bumped on incompatible changes; a broker refuses a client of another version."""

Role = Literal["user", "agent"]
AgentStatus = Literal["available", "away", "busy"]
Scope = Literal["annotate", "control", "run"]
"""What a grant allows: draw on the user's screen, type, run scripted steps."""
VerifyMethod = Literal["key", "totp", "attest"]
SignalKind = Literal["offer", "answer", "bye", "pause", "resume"]


class Msg(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", omit_defaults=True):
    """Base of all messages."""

    rid: int = 0


# -- handshake -----------------------------------------------------------------


class Hello(Msg, tag="hello", frozen=True):
    """U/A -> B: first message on a control channel."""

    version: int = PROTOCOL_VERSION
    client: str = ""
    host: str = ""
    os_user: str = ""


class Welcome(Msg, tag="welcome", frozen=True):
    """B -> U/A: the handshake answer: who the broker says you are."""

    version: int
    role: Role
    name: str
    broker: str
    registered: bool = True


class Ok(Msg, tag="ok", frozen=True):
    """B -> U/A: a request succeeded and has no richer answer."""


class Error(Msg, tag="error", frozen=True):
    """B -> U/A (or U/A -> B): a request failed; ``code`` is machine readable."""

    code: str
    message: str


class Ping(Msg, tag="ping", frozen=True):
    """Any -> any: liveness probe and round-trip timing."""

    sent: float = 0.0


class Pong(Msg, tag="pong", frozen=True):
    """Answer to :class:`Ping`, echoing its ``sent`` time."""

    sent: float = 0.0


# -- queue (user side) ---------------------------------------------------------


class Join(Msg, tag="join", frozen=True):
    """U -> B: join the queue with a topic, or resume a place with ``resume``."""

    topic: str
    resume: str | None = None


class Queued(Msg, tag="queued", frozen=True):
    """B -> U: you are in the queue. Keep ``resume`` to reclaim the place."""

    session: str
    position: int
    queued_at: float
    resume: str
    resumed: bool = False


class Position(Msg, tag="position", frozen=True):
    """B -> U: your place in the queue changed."""

    session: str
    position: int
    waiting: int


class Leave(Msg, tag="leave", frozen=True):
    """U -> B: leave the queue (the session is recorded as abandoned)."""

    session: str


class Offered(Msg, tag="offered", frozen=True):
    """B -> U: an agent picked you; answer with :class:`Ready`."""

    session: str
    agent: str


class Ready(Msg, tag="ready", frozen=True):
    """U -> B: the user's side is set up; the session becomes connected."""

    session: str
    cols: int = 80
    rows: int = 24


# -- queue (agent side) --------------------------------------------------------


class QueueEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One waiting user as agents see it."""

    session: str
    user: str
    topic: str
    queued_at: float
    position: int
    requeued: bool = False
    online: bool = True
    registered: bool = True
    note: str = ""


class ListQueue(Msg, tag="list-queue", frozen=True):
    """A -> B: ask for the queue; answered by :class:`QueueList`."""


class QueueList(Msg, tag="queue-list", frozen=True):
    """B -> A: the queue, head first. Also pushed to agents when it changes."""

    entries: tuple[QueueEntry, ...]
    now: float


class Wallboard(Msg, tag="wallboard", frozen=True):
    """B -> A: live helpdesk figures, pushed every few seconds.

    ``answered_within`` of ``settled`` contacts today were answered within the
    service-level target (``target`` seconds); abandoned ones count as misses.
    """

    queue_length: int
    longest_wait: float | None
    answered_within: int
    settled: int
    agents_available: int
    target: float
    now: float


class SetStatus(Msg, tag="set-status", frozen=True):
    """A -> B: become available or away."""

    status: Literal["available", "away"]


class Accept(Msg, tag="accept", frozen=True):
    """A -> B: take ``session`` (or the head of the queue when ``None``)."""

    session: str | None = None


# -- session -------------------------------------------------------------------


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """What the broker knows of the user's identity, shown to the agent before help.

    Attributes:
        registered: the user's key is in the directory under ``user``.
        fingerprint: SHA256 fingerprint of the key the user logged in with.
        host: host name the user's client reported.
        os_user: operating-system account the user's client reported.
        totp: the user is enrolled for TOTP codes.
    """

    registered: bool
    fingerprint: str
    host: str = ""
    os_user: str = ""
    totp: bool = False


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A session as both sides see it."""

    session: str
    user: str
    agent: str
    topic: str
    state: str
    queued_at: float
    answered_at: float | None = None
    cols: int = 80
    rows: int = 24
    evidence: Evidence | None = None
    verified: bool = False
    ice_servers: tuple[str, ...] = ()


class Started(Msg, tag="started", frozen=True):
    """B -> U/A: the session is connected."""

    info: SessionInfo


class End(Msg, tag="end", frozen=True):
    """A -> B: end the session with a root cause (U may send it without one)."""

    session: str
    root_cause: str = ""
    resolved: bool = True


class Ended(Msg, tag="ended", frozen=True):
    """B -> U/A: the session ended; ``reason`` is ``"agent"``, ``"user"`` or ``"requeued"``."""

    session: str
    reason: str
    resolved: bool = False
    survey: bool = False


class Handoff(Msg, tag="handoff", frozen=True):
    """A -> B: hand the user back to the front of the queue for another agent.

    A first-line bot does this when its flow cannot finish; ``note`` says why
    and is shown to the next agent.
    """

    session: str
    note: str = ""


class AgentLost(Msg, tag="agent-lost", frozen=True):
    """B -> U: the agent dropped (or handed you on); you are back at the front of the queue."""

    session: str
    position: int
    reason: str = ""


class UserLost(Msg, tag="user-lost", frozen=True):
    """B -> A: the user's connection dropped."""

    session: str


# -- live session: terminal stream, chat, survey --------------------------------


class Output(Msg, tag="output", frozen=True):
    """U -> B -> A: raw bytes the user's pty wrote (relayed, never emulated on the way)."""

    session: str
    data: bytes


class Snapshot(Msg, tag="snapshot", frozen=True):
    """U -> B -> A: bytes that redraw the whole screen; replaces any missed output.

    ``top`` is the number of lines scrolled off the top since the session
    began, so annotations anchored to lines stay on their text.
    """

    session: str
    cols: int
    rows: int
    data: bytes
    top: int = 0


class Resync(Msg, tag="resync", frozen=True):
    """B -> U (or A -> B): a viewer missed output (or just joined); send a :class:`Snapshot`."""

    session: str


class Resize(Msg, tag="resize", frozen=True):
    """U -> B -> A: the user's terminal changed size."""

    session: str
    cols: int
    rows: int


class Chat(Msg, tag="chat", frozen=True):
    """U/A -> B -> A/U: a chat line; the broker fills in ``sender``."""

    session: str
    text: str
    sender: str = ""
    at: float = 0.0


class Survey(Msg, tag="survey", frozen=True):
    """U -> B: the user's satisfaction answer (1-5) after the session ended."""

    session: str
    score: int


class ListRootCauses(Msg, tag="list-root-causes", frozen=True):
    """A -> B: the root-cause tags used before, most frequent first."""


class RootCauses(Msg, tag="root-causes", frozen=True):
    """B -> A: answer to :class:`ListRootCauses`."""

    tags: tuple[str, ...]


# -- trust: identity verification ----------------------------------------------


class Verify(Msg, tag="verify", frozen=True):
    """A -> B: verify the user's identity by ``method``; ``note`` is the attestation text."""

    session: str
    method: VerifyMethod
    note: str = ""


class AskCode(Msg, tag="ask-code", frozen=True):
    """B -> U: the agent asks for the current code of the user's authenticator app."""

    session: str
    agent: str


class Code(Msg, tag="code", frozen=True):
    """U -> B: the authenticator code the user typed (never logged, never stored)."""

    session: str
    code: str


class Verified(Msg, tag="verified", frozen=True):
    """B -> U/A: the outcome of a verification."""

    session: str
    method: VerifyMethod
    ok: bool
    message: str = ""


# -- trust: grants, keys, annotations ----------------------------------------------


class AskGrant(Msg, tag="ask-grant", frozen=True):
    """A -> B -> U: the agent asks for a permission; ``seconds`` 0 means until revoked."""

    session: str
    scope: Scope
    seconds: float = 0.0
    agent: str = ""


class GrantAnswer(Msg, tag="grant", frozen=True):
    """U -> B -> A: the user's decision; ``grant`` is the id later messages must carry."""

    session: str
    scope: Scope
    allowed: bool
    grant: str = ""
    expires_at: float | None = None
    reason: str = ""
    """Why it was refused without asking the user (e.g. ``not-verified``), if so."""


class Revoke(Msg, tag="revoke", frozen=True):
    """U -> B -> A: the user revoked grants (all of them when ``grants`` is empty)."""

    session: str
    grants: tuple[str, ...] = ()
    reason: str = "revoked by the user"


class Keys(Msg, tag="keys", frozen=True):
    """A -> B -> U: keystrokes for the user's terminal under ``grant``.

    The grant is a ``control`` or ``run`` grant. An agent may leave ``grant``
    empty: the broker fills in the newest live one (the user's machine still
    checks it).
    """

    session: str
    grant: str
    data: bytes
    agent: str = ""


class KeysRefused(Msg, tag="keys-refused", frozen=True):
    """U -> B -> A: the user's client refused keystrokes; ``reason`` says why."""

    session: str
    grant: str
    reason: str


class Annotation(msgspec.Struct, frozen=True, kw_only=True):
    """A mark the agent draws on the user's screen; never typed into the shell.

    Terminal coordinates are cells; ``line`` counts lines since the session
    started (scrolled-off lines included), so the mark stays on its text.
    Desktop coordinates are pixels of the shared desktop.
    """

    id: str
    kind: Literal["box", "arrow", "highlight", "label"]
    x: int
    line: int
    x2: int = 0
    line2: int = 0
    text: str = ""
    ttl: float = 30.0
    surface: Literal["terminal", "desktop"] = "terminal"
    relative: bool = False
    """``line``/``line2`` are rows of the user's screen as it is when the mark arrives
    (for scripts, which do not track scrolling)."""


class Annotate(Msg, tag="annotate", frozen=True):
    """A -> B -> U: draw ``annotation`` under an ``annotate`` grant."""

    session: str
    grant: str
    annotation: Annotation
    agent: str = ""


class ClearAnnotations(Msg, tag="clear-annotations", frozen=True):
    """U/A -> B -> A/U: remove annotations (all when ``ids`` is empty)."""

    session: str
    ids: tuple[str, ...] = ()


class Hidden(Msg, tag="hidden", frozen=True):
    """U -> B -> A: the user's terminal reads a secret (echo off); output is withheld."""

    session: str
    on: bool


# -- media signalling --------------------------------------------------------------


class Signal(Msg, tag="signal", frozen=True):
    """U/A -> B -> A/U: WebRTC signalling (SDP offer/answer) and share control."""

    session: str
    kind: SignalKind
    sdp: str = ""
    media: str = ""


Message = (
    Hello
    | Welcome
    | Ok
    | Error
    | Ping
    | Pong
    | Join
    | Queued
    | Position
    | Leave
    | Offered
    | Ready
    | ListQueue
    | QueueList
    | Wallboard
    | SetStatus
    | Accept
    | Started
    | End
    | Ended
    | Handoff
    | AgentLost
    | UserLost
    | Output
    | Snapshot
    | Resync
    | Resize
    | Chat
    | Survey
    | ListRootCauses
    | RootCauses
    | Verify
    | AskCode
    | Code
    | Verified
    | AskGrant
    | GrantAnswer
    | Revoke
    | Keys
    | KeysRefused
    | Annotate
    | ClearAnnotations
    | Hidden
    | Signal
)
"""Every message type the protocol knows."""
