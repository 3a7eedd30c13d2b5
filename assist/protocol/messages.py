"""Versioned, typed protocol messages.

Every message is a frozen :mod:`msgspec` struct tagged by its ``t`` field and
carries an optional request id ``rid``: a reply (``Ok``, ``Error`` or a typed
answer) echoes the ``rid`` of the request it answers, so clients can match
replies to requests while events (``rid == 0``) flow in between.

Direction is noted on each class: U = user client, A = agent client,
B = broker.

Every value that sizes something (terminal cols/rows, text, byte strings,
lists, numbers) carries its bound in its type, so the codec refuses an
oversized value with a typed ``invalid`` error where it enters, before any
handler sees it. Queue views go to agents as a first page and then deltas
(:class:`QueuePage`, :class:`QueueDelta`); no message grows with the queue.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# The bounds and words of base are named through this module (``messages as m``):
# mypy re-exports them (pyproject.toml).
from assist.protocol.base import (
    ID_PATTERN,
    MAX_COLS,
    MAX_COUNT,
    MAX_ID,
    MAX_KEYS,
    MAX_LIST,
    MAX_NAME,
    MAX_NOTE,
    MAX_OUTPUT,
    MAX_ROWS,
    MAX_SDP,
    MAX_SNAPSHOT,
    MAX_TEXT,
    MAX_TOPIC,
    PAGE,
    PROTOCOL_VERSION,
    AgentStatus,
    AnnotationKind,
    Availability,
    Cols,
    Coord,
    Count,
    HiddenWhy,
    Id,
    Line,
    MarkId,
    MediaLine,
    Msg,
    Name,
    Note,
    Role,
    Rows,
    Scope,
    SignalKind,
    Surface,
    VerifyMethod,
)
from assist.protocol.invites import Enrol, Enrolled, InviteMade, MakeInvite
from assist.protocol.trust import (
    Annotate,
    Annotation,
    AskCode,
    AskGrant,
    ClearAnnotations,
    Code,
    GrantAnswer,
    Hidden,
    Keys,
    KeysRefused,
    Revoke,
    Verified,
    Verify,
)

# -- handshake -----------------------------------------------------------------


class Hello(Msg, tag="hello", frozen=True):
    """U/A -> B: first message on a control channel."""

    version: Annotated[int, msgspec.Meta(ge=0, le=2**31)] = PROTOCOL_VERSION
    client: Name = ""
    host: Name = ""
    os_user: Name = ""
    watch: bool = True
    """Agents: receive queue views (a script that only acts on a session says no)."""
    certificate: Annotated[str, msgspec.Meta(max_length=16 * 1024)] = ""
    """An OpenSSH certificate of the key logged in with, for a broker that trusts
    its authority (the key itself need not be registered)."""


class Welcome(Msg, tag="welcome", frozen=True):
    """B -> U/A: the handshake answer: who the broker says you are."""

    version: int
    role: Role
    name: Name
    broker: Name
    registered: bool = True


class Ok(Msg, tag="ok", frozen=True):
    """B -> U/A: a request succeeded and has no richer answer."""


class Error(Msg, tag="error", frozen=True):
    """B -> U/A (or U/A -> B): a request failed; ``code`` is machine readable.

    Codes include ``invalid`` (a field out of its bound), ``malformed``,
    ``too-large``, ``too-deep``, ``unknown-type``, ``state``, ``not-found``,
    ``rate-limit`` (too many messages: slow down or be disconnected),
    ``slow-consumer`` (replies were not read: the connection is closed),
    ``already-waiting`` (this key already holds a request; join with
    ``takeover`` to move it here) and ``internal``.
    """

    code: Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
    message: Note


class Ping(Msg, tag="ping", frozen=True):
    """Any -> any: liveness probe and round-trip timing."""

    sent: float = 0.0


class Pong(Msg, tag="pong", frozen=True):
    """Answer to :class:`Ping`, echoing its ``sent`` time."""

    sent: float = 0.0


# -- queue (user side) ---------------------------------------------------------


class Join(Msg, tag="join", frozen=True):
    """U -> B: join the queue with a topic, or resume a place with ``resume``.

    A resumed place that is a live session is answered with :class:`Started`
    (``resumed``), a waiting one with :class:`Queued`. ``takeover`` moves the
    request this key already holds (waiting or live) to this connection; the
    connection that held it is told with :class:`TakenOver`.
    """

    topic: Annotated[str, msgspec.Meta(max_length=MAX_TOPIC)]
    resume: Id | None = None
    takeover: bool = False


class Queued(Msg, tag="queued", frozen=True):
    """B -> U: you are in the queue. Keep ``resume`` to reclaim the place."""

    session: Id
    position: Count
    queued_at: float
    resume: Id
    resumed: bool = False


class TakenOver(Msg, tag="taken-over", frozen=True):
    """B -> U: another ``assist help`` with the same key took this request over; stop."""

    session: Id


class Position(Msg, tag="position", frozen=True):
    """B -> U: your place in the queue changed (sent a few times a second at most)."""

    session: Id
    position: Count
    waiting: Count


class Leave(Msg, tag="leave", frozen=True):
    """U -> B: leave the queue (the session is recorded as abandoned)."""

    session: Id


class Offered(Msg, tag="offered", frozen=True):
    """B -> U: an agent picked you; answer with :class:`Ready`."""

    session: Id
    agent: Name


class Ready(Msg, tag="ready", frozen=True):
    """U -> B: the user's side is set up; the session becomes connected."""

    session: Id
    cols: Cols = 80
    rows: Rows = 24


# -- queue (agent side) --------------------------------------------------------


class QueueEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One waiting user as agents see it.

    The order of service follows from the entry itself: requeued users first,
    then by ``queued_at`` (then ``session``); ``position`` is filled in
    :class:`QueueList` replies and left 0 in pushed views.
    """

    session: Id
    user: Name
    topic: Annotated[str, msgspec.Meta(max_length=MAX_TOPIC)]
    queued_at: float
    position: Count = 0
    requeued: bool = False
    online: bool = True
    registered: bool = True
    note: Note = ""


Entries = Annotated[tuple[QueueEntry, ...], msgspec.Meta(max_length=PAGE)]


class ListQueue(Msg, tag="list-queue", frozen=True):
    """A -> B: ask for a page of the queue; answered by :class:`QueueList`."""

    offset: Count = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=PAGE)] = PAGE


class QueueList(Msg, tag="queue-list", frozen=True):
    """B -> A: a page of the queue, head first: ``entries`` from place ``offset + 1``
    of ``total`` waiting."""

    entries: Entries
    now: float
    total: Count = 0
    offset: Count = 0


class QueuePage(Msg, tag="queue-page", frozen=True):
    """B -> A: the whole queue at ``version``, pushed in pages (``last`` on the final one).

    Sent when an agent connects, and again instead of deltas it could not
    keep up with; the pages replace what the agent had.
    """

    version: Count
    entries: Entries
    total: Count
    offset: Count = 0
    last: bool = True
    now: float = 0.0


class QueueDelta(Msg, tag="queue-delta", frozen=True):
    """B -> A: what changed in the queue since ``version - 1``.

    ``joined`` entries are new (or back); ``left`` sessions were taken,
    abandoned or moved; ``changed`` entries replace the entry of the same
    session (online again, a note). A gap in versions means the agent missed
    something: it asks again with :class:`ListQueue` (or waits for the pages
    the broker pushes after a lag).
    """

    version: Count
    joined: Entries = ()
    left: Annotated[tuple[Id, ...], msgspec.Meta(max_length=PAGE)] = ()
    changed: Entries = ()
    now: float = 0.0


class Wallboard(Msg, tag="wallboard", frozen=True):
    """B -> A: live helpdesk figures, pushed every few seconds.

    ``answered_within`` of ``settled`` contacts today were answered within the
    service-level target (``target`` seconds); abandoned ones count as misses.
    """

    queue_length: Count
    longest_wait: float | None
    answered_within: Count
    settled: Count
    agents_available: Count
    target: float
    now: float


class SetStatus(Msg, tag="set-status", frozen=True):
    """A -> B: become available or away."""

    status: Availability


class Accept(Msg, tag="accept", frozen=True):
    """A -> B: take ``session`` (or the head of the queue when ``None``)."""

    session: Id | None = None


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
    fingerprint: Name
    host: Name = ""
    os_user: Name = ""
    totp: bool = False


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A session as both sides see it."""

    session: Id
    user: Name
    agent: Name
    topic: Annotated[str, msgspec.Meta(max_length=MAX_TOPIC)]
    state: Name
    queued_at: float
    answered_at: float | None = None
    cols: Cols = 80
    rows: Rows = 24
    evidence: Evidence | None = None
    verified: bool = False
    ice_servers: Annotated[tuple[Note, ...], msgspec.Meta(max_length=MAX_LIST)] = ()


class Started(Msg, tag="started", frozen=True):
    """B -> U/A: the session is connected.

    ``resumed``: the session was live before and goes on (after a reconnect
    of either side or a broker restart); grants still live follow as
    :class:`GrantAnswer` messages.
    """

    info: SessionInfo
    resumed: bool = False
    resume: Id = ""
    """To the user after a takeover: the new token for coming back to this session."""


class End(Msg, tag="end", frozen=True):
    """A -> B: end the session with a root cause (U may send it without one)."""

    session: Id
    root_cause: Note = ""
    resolved: bool = True


class Ended(Msg, tag="ended", frozen=True):
    """B -> U/A: the session ended for this side.

    ``reason`` is ``"agent"``, ``"user"``, ``"user-lost"`` or, to an agent,
    ``"requeued"`` (the user went back to the queue while the agent was away);
    ``message`` says it in words.
    """

    session: Id
    reason: Name
    resolved: bool = False
    survey: bool = False
    message: Note = ""


class Away(Msg, tag="away", frozen=True):
    """B -> U/A: the other side's connection dropped; the session waits until ``until``.

    If they are not back by then, the user goes first in the queue (agent
    away) or the session ends (user away).
    """

    session: Id
    who: Role
    until: float


class Back(Msg, tag="back", frozen=True):
    """B -> U/A: the other side is connected again; the session goes on."""

    session: Id
    who: Role


class Handoff(Msg, tag="handoff", frozen=True):
    """A -> B: hand the user back to the front of the queue for another agent.

    A first-line bot does this when its flow cannot finish; ``note`` says why
    and is shown to the next agent.
    """

    session: Id
    note: Note = ""


class AgentLost(Msg, tag="agent-lost", frozen=True):
    """B -> U: the agent dropped (or handed you on); you are back at the front of the queue."""

    session: Id
    position: Count
    reason: Note = ""


class UserLost(Msg, tag="user-lost", frozen=True):
    """B -> A: the user left before the offered session started."""

    session: Id


# -- live session: terminal stream, chat, survey --------------------------------


class Output(Msg, tag="output", frozen=True):
    """U -> B -> A: raw bytes the user's pty wrote (relayed, never emulated on the way)."""

    session: Id
    data: Annotated[bytes, msgspec.Meta(max_length=MAX_OUTPUT)]


class Snapshot(Msg, tag="snapshot", frozen=True):
    """U -> B -> A: bytes that redraw the whole screen; replaces any missed output.

    ``top`` is the number of lines scrolled off the top since the session
    began, so annotations anchored to lines stay on their text.
    """

    session: Id
    cols: Cols
    rows: Rows
    data: Annotated[bytes, msgspec.Meta(max_length=MAX_SNAPSHOT)]
    top: Annotated[int, msgspec.Meta(ge=0, le=2**40)] = 0


class Resync(Msg, tag="resync", frozen=True):
    """B -> U (or A -> B): a viewer missed output (or just joined); send a :class:`Snapshot`."""

    session: Id


class Resize(Msg, tag="resize", frozen=True):
    """U -> B -> A: the user's terminal changed size."""

    session: Id
    cols: Cols
    rows: Rows


class Chat(Msg, tag="chat", frozen=True):
    """U/A -> B -> A/U: a chat line; the broker fills in ``sender``."""

    session: Id
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
    sender: Name = ""
    at: float = 0.0


class Survey(Msg, tag="survey", frozen=True):
    """U -> B: the user's satisfaction answer (1-5) after the session ended."""

    session: Id
    score: Annotated[int, msgspec.Meta(ge=1, le=5)]


class ListRootCauses(Msg, tag="list-root-causes", frozen=True):
    """A -> B: the root-cause tags used before, most frequent first."""


class RootCauses(Msg, tag="root-causes", frozen=True):
    """B -> A: answer to :class:`ListRootCauses`."""

    tags: Annotated[tuple[Note, ...], msgspec.Meta(max_length=MAX_LIST)]


# -- media signalling --------------------------------------------------------------


class Signal(Msg, tag="signal", frozen=True):
    """U/A -> B -> A/U: WebRTC signalling (SDP offer/answer) and share control."""

    session: Id
    kind: SignalKind
    sdp: Annotated[str, msgspec.Meta(max_length=MAX_SDP)] = ""
    media: Name = ""
    line: MediaLine = "screen"


Message = (
    Hello
    | Welcome
    | Ok
    | Error
    | Ping
    | Pong
    | Join
    | Queued
    | TakenOver
    | Position
    | Leave
    | Offered
    | Ready
    | ListQueue
    | QueueList
    | QueuePage
    | QueueDelta
    | Wallboard
    | SetStatus
    | Accept
    | Started
    | End
    | Ended
    | Away
    | Back
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
    | Enrol
    | Enrolled
    | MakeInvite
    | InviteMade
)
"""Every message type the protocol knows."""
