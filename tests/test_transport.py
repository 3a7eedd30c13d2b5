"""Transports: the SSH adapter's cipher and packets, the in-memory pair's flow control."""

from __future__ import annotations

import asyncio

import pytest
from asyncssh import connection as ssh_connection

from assist.broker.server import Broker
from assist.protocol import messages as m
from assist.transport import ssh
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
