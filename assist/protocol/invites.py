"""Messages of invites: enrolling a new user's key, and an agent making an invite.

A client that holds an invite connects with the SSH user name ``enrol`` and
any key; the broker takes exactly one :class:`Enrol` on that connection,
answers :class:`Enrolled` (or an error) and closes it. The client then
connects as ``user`` with the key that is now registered.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from assist.protocol.base import Count, Msg, Name

MAX_CODE = 64
"""Characters of an invite code."""
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CODE,
                                   pattern="^[A-Za-z0-9_-]*$")]
MAX_INVITE_SECONDS = 30 * 24 * 3600
"""The longest an invite may stay valid (30 days)."""
MAX_USES = 1000


class Enrol(Msg, tag="enrol", frozen=True):
    """U -> B (as ``enrol``): register the key of this connection with an invite code.

    ``name`` proposes a user name (the OS account) when the invite names nobody.
    """

    code: Code
    name: Name = ""


class Enrolled(Msg, tag="enrolled", frozen=True):
    """B -> U: the key is registered; log in as ``user`` from now on, as ``name``."""

    name: Name
    broker: Name = ""


class MakeInvite(Msg, tag="make-invite", frozen=True):
    """A -> B: make an invite (the agent's client builds the join string around it)."""

    uses: Annotated[int, msgspec.Meta(ge=1, le=MAX_USES)] = 1
    seconds: Annotated[float, msgspec.Meta(gt=0, le=MAX_INVITE_SECONDS)] = 3600.0
    name: Name = ""


class InviteMade(Msg, tag="invite-made", frozen=True):
    """B -> A: the code of a new invite, with its terms."""

    code: Code
    uses: Count
    expires_at: float
