"""The guard with a real pty: keys that wait for the program obey the grant at delivery."""

from __future__ import annotations

import asyncio

from assist.client.guard import Guard
from assist.protocol import messages as m
from assist.share.pty import AGENT_QUEUE, PtyProcess
from tests.test_pty import run_until

SLOW_READER = ["sh", "-c", "sleep 2; wc -c; echo done"]
"""Reads nothing for two seconds, then counts what it was typed."""
LINES = (b"a" * 59 + b"\n") * 2000


class Outlet:
    """Where the guard's messages to the broker go: kept for the test."""

    def __init__(self) -> None:
        self.sent: list[m.Msg] = []

    def send_nowait(self, msg: m.Msg) -> None:
        self.sent.append(msg)

    def buffered(self) -> int:
        return 0


def guarded(pty: PtyProcess, now: list[float]) -> tuple[Guard, Outlet]:
    """A guard wired to ``pty`` as the user's session wires it, on a clock of the test's."""
    outlet = Outlet()
    guard = Guard(outlet, "s1", lambda data: pty.write(data, agent=True), pty.secret_input,
                  clock=lambda: now[0], require_verification=False,
                  drop=pty.drop_agent_input, room=pty.agent_room)
    pty.agent_may_type = guard.keys_allowed
    return guard, outlet


async def test_keys_waiting_when_the_grant_runs_out_are_not_typed() -> None:
    out = bytearray()
    pty = PtyProcess(SLOW_READER, on_output=out.extend)
    pty.start()
    try:
        await asyncio.sleep(0.2)
        now = [1000.0]
        guard, _ = guarded(pty, now)
        grant = guard.decide(m.AskGrant(session="s1", scope="control", seconds=5,
                                        agent="carol"), True)
        guard.handle(m.Keys(session="s1", grant=grant, data=LINES, agent="carol"))
        queued = pty.queued_input
        assert queued > 0  # the terminal took what it could; the rest waits
        now[0] += 10  # the grant ran out while they waited
        assert not guard.keys_allowed()
        pty.write(b"\n\x04")  # the user's own keys still go through
        await run_until(pty, out, b"done")
        counted = int(out.split(b"done")[0].split()[-1])
        assert counted <= len(LINES) - queued + 2
        assert pty.queued_input == 0
    finally:
        pty.terminate()


async def test_keys_past_what_the_pty_may_queue_are_refused() -> None:
    pty = PtyProcess(SLOW_READER)
    pty.start()
    try:
        await asyncio.sleep(0.2)
        guard, outlet = guarded(pty, [1000.0])
        grant = guard.decide(m.AskGrant(session="s1", scope="control", seconds=0,
                                        agent="carol"), True)
        sent = 0
        while not any(isinstance(x, m.KeysRefused) for x in outlet.sent):
            guard.handle(m.Keys(session="s1", grant=grant, data=LINES, agent="carol"))
            sent += len(LINES)
            assert sent < 4 * AGENT_QUEUE, "never refused"
        refused = [x for x in outlet.sent if isinstance(x, m.KeysRefused)]
        assert refused[0].reason == "input-full"
        assert 0 <= pty.agent_room() < len(LINES)
        assert pty.queued_input <= AGENT_QUEUE
    finally:
        pty.terminate()


async def test_keys_allowed_follows_grants_pause_and_verification() -> None:
    pty = PtyProcess(["cat"])
    pty.start()
    try:
        now = [1000.0]
        guard, _ = guarded(pty, now)
        assert not guard.keys_allowed()  # nothing granted yet
        guard.decide(m.AskGrant(session="s1", scope="annotate", seconds=0, agent="carol"),
                     True)
        assert not guard.keys_allowed()  # drawing is not typing
        guard.decide(m.AskGrant(session="s1", scope="run", seconds=60, agent="carol"), True)
        assert guard.keys_allowed()
        guard.paused = True
        assert not guard.keys_allowed()
        guard.paused = False
        guard.require_verification = True
        assert not guard.keys_allowed()
        guard.verified = True
        assert guard.keys_allowed()
        guard.stop()
        assert not guard.keys_allowed()
    finally:
        pty.terminate()
