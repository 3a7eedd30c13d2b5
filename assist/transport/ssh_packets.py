"""What asyncssh spends on every packet that assist has no use for, taken out.

A keystroke and its echo cross SSH four times; on that path asyncssh does
four things per packet that buy assist nothing:

* An empty ``SSH_MSG_IGNORE`` packet goes ahead of every packet once
  encryption is on. That is a countermeasure for CBC-mode ciphers, whose
  next IV an attacker could otherwise predict; assist never offers a CBC
  cipher (see :data:`assist.transport.ssh.CIPHERS`: AES-GCM,
  chacha20-poly1305, AES-CTR), and for those the extra packet protects
  nothing while costing one more encryption and one more ``send()``. It is
  dropped, and only on connections whose cipher is one of ours.
* Each packet sent or received is described for the packet log (names,
  sizes, formatted strings) before the logger finds that packet logging
  (asyncssh debug level 3) is off. The description is skipped while it is.
* The keepalive timer is cancelled and made again for every packet that
  comes in. Instead the time of the last packet is noted, and a timer that
  fires early moves itself to that time plus the interval: the peer is
  declared silent at exactly the same moment as before.
* Under AES-GCM, a new ``AESGCM`` object (a new key schedule) is made for
  every packet, and the nonce is parsed back from bytes to count it up. One
  object per direction and key is made once and the counter is kept as an
  integer; the nonces are the same, in the same order (RFC 5647: a 4-byte
  fixed field, then a 64-bit invocation counter that wraps).

:func:`install` applies all four (idempotent); ``tests/test_transport.py``
checks that each still takes effect with the asyncssh in use.
"""

from __future__ import annotations

from typing import Any

from asyncssh import connection as _connection
from asyncssh import packet as _packet
from asyncssh.constants import MSG_IGNORE
from asyncssh.crypto import cipher as _cipher
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_EMPTY = b"\x00\x00\x00\x00"
"""The payload asyncssh gives its ignore packet: an empty SSH string."""
NOT_CBC = frozenset({b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com",
                     b"chacha20-poly1305@openssh.com", b"aes128-ctr", b"aes192-ctr",
                     b"aes256-ctr"})
"""Ciphers for which the ignore packet protects nothing."""
PACKET_LOG_LEVEL = 3
"""asyncssh's debug level from which packets are logged."""
GCM_TAG = 16
"""Bytes of the authentication tag after an AES-GCM packet."""
_COUNTER = (1 << 64) - 1


def _needless(conn: Any) -> bool:
    """The ignore packet would go out under a cipher that does not need it."""
    if getattr(conn, "_send_encryption", None) is None:
        return False
    name = conn._enc_alg_cs if conn.is_client() else conn._enc_alg_sc
    return name in NOT_CBC


def install() -> None:
    """Take the four costs above out of asyncssh (idempotent)."""
    cls = _connection.SSHConnection
    if getattr(cls.send_packet, "assist_one_packet", False):
        return
    _one_packet(cls)
    _quiet_packet_log()
    _lazy_keepalive(cls)
    _gcm_key_once(_cipher.GCMCipher)


def _one_packet(cls: Any) -> None:
    original = cls.send_packet

    def send_packet(self: Any, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY,) and _needless(self):
            return
        original(self, pkttype, *args, handler=handler)

    send_packet.assist_one_packet = True  # type: ignore[attr-defined]
    cls.send_packet = send_packet


def _quiet_packet_log() -> None:
    logger_class = _packet.SSHPacketLogger
    original = logger_class._log_packet

    def _log_packet(self: Any, msg: str, pkttype: int, pktid: int | None, packet: Any,
                    note: str) -> None:
        if self.logger._debug_level >= PACKET_LOG_LEVEL:
            original(self, msg, pkttype, pktid, packet, note)

    logger_class._log_packet = _log_packet  # type: ignore[method-assign]


def _lazy_keepalive(cls: Any) -> None:
    fire = cls._keepalive_timer_callback
    set_keepalive = cls.set_keepalive

    def _reset_keepalive_timer(self: Any) -> None:
        if not self._auth_complete:
            return
        self._assist_heard = self._loop.time()
        if self._keepalive_timer is None:
            self._set_keepalive_timer()

    def _keepalive_timer_callback(self: Any) -> None:
        due = getattr(self, "_assist_heard", 0.0) + self._keepalive_interval
        if due > self._loop.time():
            # Something came in since the timer was set: silence starts from then.
            self._keepalive_timer = self._loop.call_at(due, self._keepalive_timer_callback)
            return
        fire(self)

    def _set_keepalive(self: Any, interval: float | None = None,
                       count_max: int | None = None) -> None:
        # A new interval counts from now, as asyncssh's own reset would have it.
        self._cancel_keepalive_timer()
        set_keepalive(self, interval, count_max)

    cls._reset_keepalive_timer = _reset_keepalive_timer
    cls._keepalive_timer_callback = _keepalive_timer_callback
    cls.set_keepalive = _set_keepalive


def _gcm_key_once(cls: Any) -> None:
    init = cls.__init__

    def __init__(self: Any, cipher_name: str, key: bytes, iv: bytes) -> None:
        init(self, cipher_name, key, iv)
        self._assist_aead = AESGCM(key)  # what asyncssh makes for every packet
        self._assist_fixed = iv[:4]
        self._assist_count = int.from_bytes(iv[4:12], "big")

    def _next_iv(self: Any) -> bytes:
        nonce: bytes = self._assist_fixed + self._assist_count.to_bytes(8, "big")
        self._assist_count = (self._assist_count + 1) & _COUNTER
        return nonce

    def encrypt_and_sign(self: Any, header: bytes, data: bytes) -> tuple[bytes, bytes]:
        sealed: bytes = self._assist_aead.encrypt(_next_iv(self), data, header)
        return header + sealed[:-GCM_TAG], sealed[-GCM_TAG:]

    def verify_and_decrypt(self: Any, header: bytes, data: bytes, mac: bytes) -> bytes | None:
        try:
            opened: bytes = self._assist_aead.decrypt(_next_iv(self), data + mac, header)
        except InvalidTag:
            return None
        return opened

    cls.__init__ = __init__
    cls.encrypt_and_sign = encrypt_and_sign
    cls.verify_and_decrypt = verify_and_decrypt
