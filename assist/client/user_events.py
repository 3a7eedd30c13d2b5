"""What the user's side of a session tells its front ends: a small, typed vocabulary.

A :class:`~assist.client.user_session.UserSession` hands each of these frozen
dataclasses, in order and on the event loop, to the one callback it was given.
A front end renders what it cares about and ignores the rest; it answers the
questions through the session (``session.answer(ask, allowed)``,
``session.code(ask, text)``), never through the parts behind it.

=====================  ========================================================
event                  when
=====================  ========================================================
:class:`StatusChanged`   the request moved (queued, offered, connected, ...)
:class:`AgentJoined`     an agent is with the user: terminal shared, chat open
:class:`AgentGone`       that is over (ended, or back in the queue): questions
                         still open and marks belong to the past
:class:`GrantAsked`      the agent asks for a permission
:class:`CodeAsked`       the agent asks for the authenticator code
:class:`Verification`    the outcome of a verification of the user
:class:`TrustChanged`    grants, verification or hidden input changed
:class:`Revoked`         the user took every permission back
:class:`Marked`          an allowed mark (terminal or desktop) to draw
:class:`MarksCleared`    marks to remove (all when ``ids`` is empty)
:class:`ChatLine`        a chat line of the session
:class:`DesktopChanged`  the desktop share changed
:class:`CallChanged`     the call (voice, the agent's face, the microphone) changed
:class:`Notice`          something to tell the user at once (a toast)
:class:`PtyExited`       the user's shell ended
=====================  ========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from assist.client.call import CallState
from assist.client.desktop import ShareState
from assist.client.helpflow import Status
from assist.protocol import messages as m


@dataclass(frozen=True)
class Trust:
    """What the agent may do now, as the user should see it.

    Attributes:
        grants: the live grants in a few words (``control 4:32 left, annotate``),
            empty when the agent can only watch.
        verified: the agent verified the user's identity.
        hidden: the terminal reads a secret: output is withheld from the agent.
        paused: the user paused sharing (privacy pause): the agent sees nothing
            and may not type until the user resumes.
    """

    grants: str
    verified: bool
    hidden: bool
    paused: bool = False


@dataclass(frozen=True)
class StatusChanged:
    """The request moved on; ``status`` is what the user should see now."""

    status: Status


@dataclass(frozen=True)
class AgentJoined:
    """An agent is with the user: the terminal is shared and the chat is open."""

    info: m.SessionInfo


@dataclass(frozen=True)
class AgentGone:
    """The agent is gone (the session ended, or the user is back in the queue).

    Sharing, the grants and the desktop share have stopped; a question still
    open and every mark belong to what ended.
    """


ARM_DELAY = 1.0
"""Seconds before a yes counts: keys typed for the shell must not say yes."""
WHAT = {
    "control": "type in your terminal",
    "annotate": "draw on your screen to show you where to look",
    "run": "run scripted steps in your terminal (they type commands for you)",
    "mic": "hear you through your microphone",
}
"""What each permission lets the agent do, in the user's words."""


def duration_text(seconds: float) -> str:
    """``for 5 minutes``, ``for 30 seconds`` or ``until you revoke it``."""
    if seconds <= 0:
        return "until you revoke it"
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"for {minutes} minute{'s' if minutes != 1 else ''}"
    return f"for {int(seconds)} seconds"


def asking(ask: m.AskGrant) -> str:
    """The question after the agent's name: ``asks to type in your terminal, for 5 minutes.``"""
    return f"asks to {WHAT.get(ask.scope, ask.scope)}, {duration_text(ask.seconds)}."


@dataclass(frozen=True)
class GrantAsked:
    """The agent asks for a permission; answer with ``session.answer(ask, allowed)``."""

    ask: m.AskGrant


@dataclass(frozen=True)
class CodeAsked:
    """The agent asks for the authenticator's code; answer with ``session.code(ask, text)``."""

    ask: m.AskCode


@dataclass(frozen=True)
class Verification:
    """The outcome of a verification (a wrong code too: ``message`` says what is left)."""

    method: str
    ok: bool
    message: str

    @property
    def text(self) -> str:
        """What the user is told, in a line."""
        if self.ok:
            return f"The agent verified your identity ({self.method})."
        return f"Verification failed: {self.message or 'the agent was not satisfied'}."


@dataclass(frozen=True)
class TrustChanged:
    """A grant was given, taken back or ran out of its session, the user was
    verified, a secret started or stopped being read, or sharing was paused or resumed."""

    trust: Trust


@dataclass(frozen=True)
class Revoked:
    """The user revoked every permission (locally first, then the broker was told)."""

    grants: tuple[str, ...]
    reason: str = "revoked by the user"


@dataclass(frozen=True)
class Marked:
    """A mark the Guard let through, anchored to the user's text (``annotation.line``)."""

    mark: m.Annotate


@dataclass(frozen=True)
class MarksCleared:
    """Remove these marks (every one when ``ids`` is empty)."""

    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatLine:
    """A chat line of the session (the broker names the sender)."""

    sender: str
    text: str


@dataclass(frozen=True)
class DesktopChanged:
    """The desktop share changed; ``text`` says it in a line or two for the user.

    Attributes:
        state: where the share stands.
        code: the verification code to read aloud ("" until the share is live).
        error: why the share failed ("" unless it did).
        text: all of it, for the user (:meth:`DesktopSender.describe`).
    """

    state: ShareState
    code: str
    error: str
    text: str


@dataclass(frozen=True)
class CallChanged:
    """The call (the agent's voice and face, the user's microphone) changed.

    Attributes:
        state: where the call stands.
        code: the verification code ("" until the call is live).
        hearing: the agent hears the user's microphone now.
        muted: the user muted the call.
        error: why the call failed ("" unless it did).
        text: all of it, for the user (:meth:`UserCall.describe`).
    """

    state: CallState
    code: str
    hearing: bool
    muted: bool
    error: str
    text: str


@dataclass(frozen=True)
class Notice:
    """Something the user should be told at once, beyond the status lines."""

    text: str


@dataclass(frozen=True)
class PtyExited:
    """The user's shell ended with ``status``."""

    status: int


UserEvent = (StatusChanged | AgentJoined | AgentGone | GrantAsked | CodeAsked | Verification
             | TrustChanged | Revoked | Marked | MarksCleared | ChatLine | DesktopChanged
             | CallChanged | Notice | PtyExited)
"""Everything a :class:`~assist.client.user_session.UserSession` reports."""
