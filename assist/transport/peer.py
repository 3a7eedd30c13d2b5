"""Who is on the other end of an authenticated connection (transport-neutral)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Login = Literal["user", "agent", "enrol"]
"""What a client logs in as: a role, or ``enrol`` (any key, to register it with an invite)."""


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of an authenticated connection.

    Attributes:
        role: ``user``, ``agent``, or ``enrol`` (see :data:`Login`).
        name: directory name (or a ``guest-...`` name for an unregistered user).
        fingerprint: SHA256 fingerprint of the key used.
        registered: False for a user whose key is not in the directory.
        address: remote IP address.
        key: the public key used, as an OpenSSH line.
        certificate_needed: the key is not registered, but a certificate from a
            trusted authority may admit it: the hello must carry one.
    """

    role: Login
    name: str
    fingerprint: str
    registered: bool
    address: str
    key: str = ""
    certificate_needed: bool = False
