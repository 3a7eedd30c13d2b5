"""Who is on the other end of an authenticated connection (transport-neutral)."""

from __future__ import annotations

from dataclasses import dataclass

from assist.protocol.messages import Role


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of an authenticated connection.

    Attributes:
        role: ``user`` or ``agent``.
        name: directory name (or a ``guest-...`` name for an unregistered user).
        fingerprint: SHA256 fingerprint of the key used.
        registered: False for a user whose key is not in the directory.
        address: remote IP address.
    """

    role: Role
    name: str
    fingerprint: str
    registered: bool
    address: str
