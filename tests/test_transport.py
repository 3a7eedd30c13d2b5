"""Transports: the SSH adapter's cipher and packets, the in-memory pair's flow control."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asyncssh import connection as ssh_connection
from asyncssh import logging as asyncssh_logging
from asyncssh.crypto import cipher as ssh_cipher
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from assist.broker.server import Broker
from assist.protocol import messages as m
from assist.transport import ssh, ssh_packets
from assist.transport.channel import ChannelClosed
from assist.transport.memory import channel_pair
from tests.helpers import KeyPair


async def test_one_packet_per_message_under_aes_gcm(
        broker: Broker, keys: dict[str, KeyPair], monkeypatch: pytest.MonkeyPatch) -> None:
    conn = await ssh.connect("127.0.0.1", broker.port, "user", broker.public_key,
                             keys["alice"].private)
    try:
        inner = conn._conn
        assert inner._enc_alg_cs == b"aes128-gcm@openssh.com"
        sent: list[bytes] = []
        real = ssh_connection.SSHConnection._send

        def counting(self: ssh_connection.SSHConnection, data: bytes) -> None:
            if self is inner:
                sent.append(data)
            real(self, data)

        monkeypatch.setattr(ssh_connection.SSHConnection, "_send", counting)
        channel = conn.channel
        for _ in range(100):
            channel.send_nowait(m.Ping())
        for _ in range(100):
            await asyncio.wait_for(channel.recv(), 5)
        # asyncssh would send an empty SSH_MSG_IGNORE before each: 200 packets.
        assert 100 <= len(sent) <= 110
    finally:
        await conn.close()


async def test_packets_are_described_for_the_log_only_when_it_takes_them(
        broker: Broker, keys: dict[str, KeyPair], monkeypatch: pytest.MonkeyPatch) -> None:
    described: list[str] = []
    monkeypatch.setattr(asyncssh_logging.SSHLogger, "packet",
                        lambda self, pktid, packet, msg, *args, **kw: described.append(msg))
    conn = await ssh.connect("127.0.0.1", broker.port, "user", broker.public_key,
                             keys["alice"].private)
    try:
        channel = conn.channel
        channel.send_nowait(m.Ping())
        await asyncio.wait_for(channel.recv(), 5)
        assert not described, "packet logging is off: no packet is described"
        monkeypatch.setattr(asyncssh_logging.SSHLogger, "_debug_level", 3)
        channel.send_nowait(m.Ping())
        await asyncio.wait_for(channel.recv(), 5)
        assert described, "at asyncssh debug level 3 packets are logged as before"
    finally:
        await conn.close()


class _TimerCount:
    """A connection's loop, counting the timers it is asked for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timers = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.loop, name)

    def call_later(self, *args: Any) -> asyncio.TimerHandle:
        self.timers += 1
        return self.loop.call_later(*args)

    def call_at(self, *args: Any) -> asyncio.TimerHandle:
        self.timers += 1
        return self.loop.call_at(*args)


async def test_the_keepalive_timer_outlives_packets_and_still_finds_silence(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    conn = await ssh.connect("127.0.0.1", broker.port, "user", broker.public_key,
                             keys["alice"].private)
    inner = conn._conn
    asked: list[float] = []

    async def keepalive_request() -> None:
        asked.append(time.monotonic())

    inner._make_keepalive_request = keepalive_request  # type: ignore[method-assign]
    counting = _TimerCount(inner._loop)
    inner._loop = counting  # type: ignore[assignment]
    try:
        inner.set_keepalive(0.3, 1)
        channel = conn.channel
        for _ in range(20):  # 1 s of traffic: three intervals, 40 packets in
            channel.send_nowait(m.Ping())
            await asyncio.wait_for(channel.recv(), 5)
            await asyncio.sleep(0.05)
        assert not asked, "no keepalive while packets come in"
        assert counting.timers <= 6, "a timer per interval, not one per packet"
        transport = inner._transport
        assert transport is not None
        transport.pause_reading()  # the broker goes silent from here
        silent = time.monotonic()
        with pytest.raises(ChannelClosed) as closed:
            await asyncio.wait_for(channel.recv(), 5)
        gone = time.monotonic() - silent
        assert closed.value.silent
        # One unanswered request after 0.3 s of silence, then lost at 0.6 s.
        assert len(asked) == 1 and 0.2 <= asked[0] - silent <= 0.5
        assert 0.5 <= gone <= 1.5
    finally:
        inner.close()


def test_aes_gcm_makes_its_key_once_and_counts_nonces_as_rfc_5647_says(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[bytes] = []

    def counting(key: bytes) -> AESGCM:
        made.append(key)
        return AESGCM(key)

    monkeypatch.setattr(ssh_packets, "AESGCM", counting)
    key = bytes(range(16))
    # The invocation counter three steps from wrapping: it must wrap to 0, as asyncssh's.
    iv = b"\x01\x02\x03\x04" + ((1 << 64) - 3).to_bytes(8, "big")
    sender = ssh_cipher.GCMCipher("aes128-gcm", key, iv)
    receiver = ssh_cipher.GCMCipher("aes128-gcm", key, iv)
    reference = AESGCM(key)
    for n in range(5):
        header, data = n.to_bytes(4, "big"), f"packet {n}".encode()
        body, tag = sender.encrypt_and_sign(header, data)
        count = ((1 << 64) - 3 + n) % (1 << 64)
        nonce = iv[:4] + count.to_bytes(8, "big")
        assert body + tag == header + reference.encrypt(nonce, data, header)
        assert receiver.verify_and_decrypt(header, body[4:], tag) == data
    assert len(made) == 2, "one AESGCM per direction, not one per packet"
    assert receiver.verify_and_decrypt(b"hdr!", b"forged", bytes(16)) is None


async def test_memory_pair_applies_flow_control() -> None:
    a, b = channel_pair(capacity=1024)
    for _ in range(200):
        a.send_nowait(m.Ping(sent=1.0))
    assert a.buffered() > 1024
    drained = asyncio.ensure_future(a.drain())
    await asyncio.sleep(0)
    assert not drained.done(), "a writer waits while the reader does not read"
    while a.buffered() > 1024:
        await b.recv()
    await asyncio.wait_for(drained, 1)
    b.close()
    with pytest.raises(Exception, match="closed"):
        await a.recv()


async def test_a_channel_says_when_its_next_read_would_not_wait() -> None:
    ours, theirs = channel_pair()
    assert not theirs.ready
    ours.send_nowait(m.Ping(rid=1))
    ours.send_nowait(m.Ping(rid=2))
    assert (await theirs.recv()).rid == 1
    assert theirs.ready, "the second line came in the same read"
    assert (await theirs.recv()).rid == 2
    assert not theirs.ready, "the next read waits for the peer"


async def test_one_session_channel_per_ssh_connection(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    conn = await ssh.connect("127.0.0.1", broker.port, "user", broker.public_key,
                             keys["alice"].private)
    try:
        _stdin, _stdout, stderr = await conn._conn.open_session(encoding=None)
        refused = await asyncio.wait_for(stderr.read(), 5)
        assert b"one session per connection" in refused
        # The first channel still works.
        conn.channel.send_nowait(m.Ping(sent=3.0, rid=1))
        pong = await asyncio.wait_for(conn.channel.recv(), 5)
        assert isinstance(pong, m.Pong) and pong.sent == 3.0
    finally:
        await conn.close()
