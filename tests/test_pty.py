"""The pty: agent keystrokes still queued can be taken back, and never reach a password prompt."""

from __future__ import annotations

import asyncio

from assist.share.pty import PtyProcess


async def run_until(pty: PtyProcess, out: bytearray, text: bytes, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while text not in out:
            await asyncio.sleep(0.02)


async def test_queued_agent_keys_are_dropped_on_revoke() -> None:
    out = bytearray()
    # The program does not read for a while: typed input piles up.
    pty = PtyProcess(["sh", "-c", "sleep 2; wc -c; echo done"], on_output=out.extend)
    pty.start()
    try:
        await asyncio.sleep(0.2)
        pty.write((b"a" * 59 + b"\n") * 2000, agent=True)
        assert pty.queued_input > 0  # the terminal took what it could, the rest waits
        dropped = pty.drop_agent_input()
        assert dropped > 0 and pty.queued_input == 0
        pty.write(b"\n\x04", agent=False)  # the user's own keys still go through
        await run_until(pty, out, b"done")
        counted = int(out.split(b"done")[0].split()[-1])
        assert counted <= 120_000 - dropped + 2  # plus the user's own newline
    finally:
        pty.terminate()


async def test_queued_agent_keys_are_dropped_at_a_password_prompt() -> None:
    out = bytearray()
    pty = PtyProcess(["sh", "-c", "sleep 2; wc -c; echo done"], on_output=out.extend)
    pty.start()
    try:
        await asyncio.sleep(0.2)
        pty.write((b"x" * 59 + b"\n") * 2000, agent=True)
        queued = pty.queued_input
        assert queued > 0
        # Echo goes off while the keys wait: they are dropped when the terminal
        # has room again, not typed into the prompt.
        pty.secret_input = lambda: True  # type: ignore[method-assign]
        await asyncio.sleep(2.5)
        assert pty.queued_input == 0
        pty.write(b"\n\x04")
        await run_until(pty, out, b"done")
        counted = int(out.split(b"done")[0].split()[-1])
        assert counted <= 120_000 - queued + 2
    finally:
        pty.terminate()
