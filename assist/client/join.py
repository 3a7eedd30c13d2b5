"""Joining a helpdesk with an invite: the join string, and enrolling a key with it.

An invite reaches a new user as one line (the join string) holding the
broker's addresses, the fingerprint of its host key and an invite code::

    assist help --join assist-join-1.eyJiIjpbIjEyNy4wLjAuMToy...

:func:`enrol` logs in as ``enrol`` with the user's key at the first address
that answers, pins the broker's host key only if its fingerprint is the one
in the invite (no question asked: the helpdesk vouched for it), sends the
code, and saves the broker, its pin and the key in the client config. The
user is then a registered user like any other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from assist.config import ClientConfig, format_address, parse_address
from assist.errors import (
    AssistError,
    ConfigError,
    ConnectionFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    InviteRefused,
)
from assist.protocol import messages as m
from assist.transport import ssh

PREFIX = "assist-join-1."
"""How a join string starts (the number is the format's version)."""
MAX_BROKERS = 8
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}\Z")
ENROL_TIMEOUT = 15.0
DAMAGED = ("this join string is damaged or incomplete: copy the whole line your helpdesk "
           f"sent (it starts with {PREFIX})")


@dataclass(frozen=True)
class Invitation:
    """What a join string holds.

    Attributes:
        brokers: ``host:port`` of each broker node, tried in order.
        fingerprint: the SHA256 fingerprint of the brokers' host key.
        code: the invite code.
    """

    brokers: tuple[str, ...]
    fingerprint: str
    code: str

    def encode(self) -> str:
        """The join string (one line of URL-safe characters)."""
        body = json.dumps({"b": list(self.brokers), "k": self.fingerprint, "c": self.code},
                          separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> Invitation:
        """Read a join string (as pasted: spaces around it are fine).

        Raises:
            ConfigError: the string is damaged, cut short or not a join string.
        """
        text = text.strip()
        if not text.startswith(PREFIX):
            raise ConfigError(DAMAGED)
        body = text[len(PREFIX):]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            raise ConfigError(DAMAGED) from None
        if not isinstance(data, dict):
            raise ConfigError(DAMAGED)
        brokers, fingerprint, code = data.get("b"), data.get("k"), data.get("c")
        if not (isinstance(brokers, list) and 0 < len(brokers) <= MAX_BROKERS
                and all(isinstance(b, str) for b in brokers)
                and isinstance(fingerprint, str) and _FINGERPRINT.match(fingerprint)
                and isinstance(code, str) and _CODE.match(code)):
            raise ConfigError(DAMAGED)
        addresses = tuple(format_address(*parse_address(b, "join string")) for b in brokers)
        return cls(addresses, fingerprint, code)


def join_command(join: str, topic: str = "") -> str:
    """The command a user runs to join with ``join`` (and ask about ``topic``)."""
    return f"assist help --join {join}" + (f" {shlex.quote(topic)}" if topic else "")


async def enrol(invitation: Invitation, config: ClientConfig, key: Path
                ) -> tuple[ClientConfig, str]:
    """Register ``key`` with the invite at the first broker that answers.

    Returns:
        The client config, saved, with that broker as the default, its host key
        pinned and ``key`` as the user key; and the user's name.

    Raises:
        InviteRefused: the code is unknown, used up or expired.
        HostKeyMismatch: a broker showed a key other than the invite's.
        ConnectionFailed: no broker of the invite could be reached.
    """
    failure: AssistError | None = None
    for address in invitation.brokers:
        host, port = parse_address(address, "join string")
        at = dataclasses.replace(config, host=host, port=port, key=key)
        at = dataclasses.replace(at, host_key=ClientConfig.load(at.file, address).host_key)
        try:
            name, host_key = await _enrol_at(at, invitation)
        except (HostKeyMismatch, InviteRefused):
            raise
        except ConnectionFailed as exc:
            failure = exc
            continue
        # Every node of the invite is remembered: the client fails over between them.
        others = invitation.brokers if len(invitation.brokers) > 1 else ()
        saved = dataclasses.replace(at, host_key=host_key, brokers=others)
        saved.save(keys={"user_key": str(key)})
        return saved, name
    assert failure is not None
    raise failure


async def _enrol_at(config: ClientConfig, invitation: Invitation) -> tuple[str, str]:
    """Enrol at one broker; return the user's name and the host key to pin."""
    try:
        conn = await ssh.connect(config.host, config.port, "enrol", config.host_key, config.key)
    except HostKeyUnknown as exc:
        if exc.fingerprint != invitation.fingerprint:
            raise _mismatch(config, exc.fingerprint, invitation) from None
        conn = await ssh.connect(config.host, config.port, "enrol", exc.public_key, config.key)
    seen = ssh.key_fingerprint(conn.host_key)
    try:
        if seen != invitation.fingerprint:
            raise _mismatch(config, seen, invitation)
        await conn.channel.send(m.Enrol(code=invitation.code, name=config.os_user, rid=1))
        try:
            reply = await asyncio.wait_for(conn.channel.recv(), ENROL_TIMEOUT)
        except TimeoutError:
            raise ConnectionFailed(f"the broker at {config.address} did not answer the "
                                   "invite") from None
        except Exception:
            raise ConnectionFailed(f"the broker at {config.address} closed the connection "
                                   "before answering the invite") from None
    finally:
        await conn.close()
    if isinstance(reply, m.Error):
        if reply.code == "invite":
            raise InviteRefused(reply.message)
        raise ConnectionFailed(f"the broker refused the invite: {reply.message}")
    if not isinstance(reply, m.Enrolled):
        raise ConnectionFailed("the broker answered the invite with something else; "
                               "is it an older assist?")
    return reply.name, conn.host_key


def _mismatch(config: ClientConfig, seen: str, invitation: Invitation) -> HostKeyMismatch:
    return HostKeyMismatch(
        f"the broker at {config.address} presented key {seen}, not the one in your invite "
        f"({invitation.fingerprint}). Someone may be intercepting the connection: do not go "
        "on, and tell your helpdesk.")
