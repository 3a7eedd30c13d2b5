"""Enrolment: a new user's key is registered with an invite code.

A client holding an invite logs in as ``enrol`` with any key (see
:mod:`assist.protocol.invites`). Such a connection never reaches the hub: it
may send one :class:`~assist.protocol.invites.Enrol` within
:data:`ENROL_TIMEOUT`, gets :class:`~assist.protocol.invites.Enrolled` or a
typed error, and is closed. A key that is registered already gets its name
back without spending a use of the code. Few such connections are held from
one address at once (:data:`MAX_PER_ADDRESS`), and each is short.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Callable

from assist.core import pubkey
from assist.errors import (
    AssistError,
    ConfigError,
    Duplicate,
    InviteRefused,
    NotFound,
    ProtocolError,
    StateError,
)
from assist.protocol import messages as m
from assist.store import Store
from assist.store.directory import check_name
from assist.store.invites import Invite, new_code
from assist.transport.channel import ChannelClosed, MessageChannel
from assist.transport.peer import Peer

log = logging.getLogger(__name__)

ENROL_TIMEOUT = 10.0
"""Seconds an enrolling client has to send its code."""
MAX_PER_ADDRESS = 8
"""Enrolling connections from one address at once."""
_NOT_NAME = re.compile(r"[^A-Za-z0-9._@-]+")


def check_terms(name: str, uses: int) -> None:
    """An invite may name its user (a valid name) only for one key.

    Raises:
        ConfigError: a bad name, or a named invite for more than one key.
    """
    if name:
        check_name(name)
        if uses != 1:
            raise ConfigError("an invite that names its user enrols one key: use --uses 1")


def make_invite(store: Store, name: str, uses: int, seconds: float, by: str,
                now: float) -> tuple[str, Invite]:
    """A new invite made by ``by`` (``admin`` or ``agent:NAME``), audited; its code.

    Raises:
        ConfigError: bad terms (see :func:`check_terms`).
        StateError: an agent names a registered user (a key for someone who
            exists is an admin's to add).
    """
    check_terms(name, uses)
    if name and by != "admin" and any(
            p.name == name for p in store.directory.list("user", name)):
        raise StateError(f"{name} is a registered user: only an admin may invite a new "
                         "key for them (assist invite on the broker's machine)")
    code = new_code()
    invite = store.invites.make(code, name, uses, now + seconds, by, now)
    store.audit.append(now, by, "invite-made", None,
                       {"uses": uses, "name": name, "expires_at": invite.expires_at})
    return code, invite


def propose_name(hint: str, taken: Callable[[str], bool]) -> str:
    """A free user name made of ``hint`` (the user's OS account): ``alice``, ``alice-2``..."""
    base = _NOT_NAME.sub("-", hint).strip("-._@")[:40] or "user"
    if not base[0].isalnum():
        base = f"user-{base}"
    name, n = base, 1
    while taken(name):
        n += 1
        name = f"{base}-{n}"
    return check_name(name)


class Enrolment:
    """Serves enrolling connections for one broker."""

    def __init__(self, store: Store, clock: Callable[[], float], broker: str) -> None:
        self.store = store
        self.clock = clock
        self.broker = broker
        self._count: collections.Counter[str] = collections.Counter()

    async def serve(self, channel: MessageChannel, peer: Peer) -> None:
        """Take one enrolment on ``channel``, answer it, close."""
        if self._count[peer.address] >= MAX_PER_ADDRESS:
            channel.send_nowait(m.Error(code="too-many-connections",
                                        message="too many enrolments from your address at "
                                                "once; try again in a minute"))
            await self._close(channel)
            return
        self._count[peer.address] += 1
        try:
            await self._serve(channel, peer)
        finally:
            self._count[peer.address] -= 1
            if self._count[peer.address] <= 0:
                del self._count[peer.address]
            await self._close(channel)

    async def _serve(self, channel: MessageChannel, peer: Peer) -> None:
        try:
            msg = await asyncio.wait_for(channel.recv(), ENROL_TIMEOUT)
        except (TimeoutError, ChannelClosed):
            return
        except ProtocolError as exc:
            channel.send_nowait(m.Error(code=exc.code, message=exc.message))
            return
        if not isinstance(msg, m.Enrol):
            channel.send_nowait(m.Error(code="protocol", rid=msg.rid,
                                        message="an enrolling connection takes one enrol "
                                                "message"))
            return
        try:
            name = self.enrol(peer, msg)
        except AssistError as exc:
            log.info("enrolment of %s refused: %s", peer.fingerprint, exc.message)
            channel.send_nowait(m.Error(code=exc.code, message=exc.message, rid=msg.rid))
            return
        except Exception:
            # A bug or a busy store must not end in silence: the client is told.
            log.exception("enrolment of %s failed", peer.fingerprint)
            channel.send_nowait(m.Error(code="internal", rid=msg.rid,
                                        message="the helpdesk could not enrol your key "
                                                "just now; try again in a minute"))
            return
        channel.send_nowait(m.Enrolled(name=name, broker=self.broker, rid=msg.rid))

    def enrol(self, peer: Peer, msg: m.Enrol) -> str:
        """Register ``peer``'s key with the invite of ``msg.code``; return the user's name.

        Raises:
            InviteRefused: the code is unknown, used up or expired, or the key
                belongs to an agent.
        """
        directory = self.store.directory
        known = directory.lookup(peer.fingerprint)
        if known is not None:
            if known.role != "user":
                raise InviteRefused("this key is an agent's; use another key to ask for help")
            return known.name  # enrolled before (a second run): no use is spent
        now = self.clock()
        key = pubkey.parse(peer.key, "the key you logged in with")
        invite = self.store.invites.check(msg.code, now)

        def taken(name: str) -> bool:
            try:
                directory.get("user", name)
            except NotFound:
                return False
            return True

        name = invite.name or propose_name(msg.name, taken)
        if invite.name and taken(name) and invite.made_by != "admin":
            raise InviteRefused(f"only an admin's invite may add a key for {name}")
        # The key, the use and its record in one transaction: if another broker took
        # the last use meanwhile, the key is not kept either.
        with self.store.db.transaction():
            try:
                if invite.name and taken(name):
                    directory.add_key("user", name, key, now)  # a known user's new machine
                else:
                    directory.add("user", name, key, now)
            except Duplicate as exc:
                raise InviteRefused(exc.message) from None
            invite = self.store.invites.use(msg.code, now)
            self.store.audit.append(now, f"user:{name}", "invite-used", None,
                                    {"fingerprint": peer.fingerprint,
                                     "made_by": invite.made_by,
                                     "uses_left": invite.uses_left})
        log.info("enrolled %s as user %s", peer.fingerprint, name)
        return name

    @staticmethod
    async def _close(channel: MessageChannel) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.drain(), 2)
        channel.close()
