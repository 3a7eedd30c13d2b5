"""One SSH packet per message: no empty SSH_MSG_IGNORE before each one.

asyncssh sends an empty ``SSH_MSG_IGNORE`` packet ahead of every packet once
encryption is on. That is a countermeasure for CBC-mode ciphers, whose next
IV an attacker could otherwise predict; assist never offers a CBC cipher
(see :data:`assist.transport.ssh.CIPHERS`: AES-GCM, chacha20-poly1305,
AES-CTR), and for those the extra packet protects nothing. It does cost one
more encryption and one more ``send()`` per message, on a keystroke's path
four times over, so it is left out: :func:`install` wraps asyncssh's
``send_packet`` to drop exactly that packet, and only on connections whose
cipher is one of ours. ``tests/test_transport.py`` checks it still applies.
"""

from __future__ import annotations

from typing import Any

from asyncssh import connection as _connection
from asyncssh.constants import MSG_IGNORE

_EMPTY = b"\x00\x00\x00\x00"
"""The payload asyncssh gives its ignore packet: an empty SSH string."""
NOT_CBC = frozenset({b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com",
                     b"chacha20-poly1305@openssh.com", b"aes128-ctr", b"aes192-ctr",
                     b"aes256-ctr"})
"""Ciphers for which the ignore packet protects nothing."""

def _needless(conn: Any) -> bool:
    """The ignore packet would go out under a cipher that does not need it."""
    if getattr(conn, "_send_encryption", None) is None:
        return False
    name = conn._enc_alg_cs if conn.is_client() else conn._enc_alg_sc
    return name in NOT_CBC


def install() -> None:
    """Drop asyncssh's per-packet ignore packet where it protects nothing (idempotent)."""
    original = _connection.SSHConnection.send_packet
    if getattr(original, "assist_one_packet", False):
        return

    def send_packet(self: Any, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY,) and _needless(self):
            return
        original(self, pkttype, *args, handler=handler)

    send_packet.assist_one_packet = True  # type: ignore[attr-defined]
    _connection.SSHConnection.send_packet = send_packet  # type: ignore[method-assign]
