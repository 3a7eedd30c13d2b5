"""Trust rules against a real broker and a real pty: verification, grants, keys, privacy."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest

from assist.broker.server import Broker
from assist.client.link import BrokerError
from assist.client.user_events import Verification
from assist.core.grants import GrantTable
from assist.protocol import messages as m
from tests.helpers import KeyPair, asciinema_cat, tamper, until
from tests.user_side import live_session


def audit_actions(broker: Broker, session: str) -> list[str]:
    assert broker.store is not None
    return [r.action for r in broker.store.audit.records(session)]


async def test_no_control_before_verification(broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        with pytest.raises(BrokerError, match="verify the user's identity first"):
            await live.carol.ask_grant(live.session, "control", 300)
        assert live.asks == []
        # Annotating needs no verification: it acts on nothing.
        await live.grant("annotate")


async def test_keys_need_a_live_grant_and_stop_at_revoke(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        # No grant at all: the broker refuses, and so would the user's machine.
        await live.carol.send_keys(live.session, "made-up", b"echo sneaky-$((1+1))\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "no-grant"

        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await live.carol.send_keys(live.session, grant, b"echo granted-$((6*7))\r")
        await live.wait_pty(b"granted-42")

        assert live.guard.revoke_all() == 1  # local, immediate
        await live.carol.send_keys(live.session, grant, b"echo after-$((2+3))\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "revoked"
        await asyncio.sleep(0.3)
        assert b"sneaky-2" not in live.pty_out and b"after-5" not in live.pty_out
        actions = audit_actions(broker, live.session)
        for action in ("verify", "ask-grant", "grant", "keys", "revoke", "keys-refused"):
            assert action in actions


async def test_the_users_machine_is_the_authority(broker: Broker,
                                                  keys: dict[str, KeyPair]) -> None:
    """Even if the broker forwarded keys it should not have, the user's guard refuses."""
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        live.guard.table.revoke()  # revoked locally; the broker has not heard yet
        live.guard.handle(m.Keys(session=live.session, grant=grant, data=b"echo x-$((3*3))\r"))
        live.guard.handle(m.Keys(session=live.session, grant="forged",
                                 data=b"echo y-$((4*4))\r"))
        await asyncio.sleep(0.3)
        assert b"x-9" not in live.pty_out and b"y-16" not in live.pty_out
        assert live.guard.refused == 2


async def test_an_expired_grant_is_refused(broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 0.5)
        await live.carol.send_keys(live.session, grant, b"echo in-time\r")
        await live.wait_pty(b"in-time")
        await asyncio.sleep(0.6)
        await live.carol.send_keys(live.session, grant, b"echo too-late-$((1+1))\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "expired"
        # And the user's own table says the same, whatever the broker thinks.
        table = GrantTable()
        table.grant("g", "control", "carol", 0.0, 0.5)
        with pytest.raises(Exception, match="ran out"):
            table.check("g", "control", 0.5)
        await asyncio.sleep(0.2)
        assert b"too-late-2" not in live.pty_out


async def test_echo_off_hides_input_from_agent_and_recording(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await live.carol.send_keys(
            live.session, grant,
            b"read -s -p 'Password: ' pw; echo; echo length-${#pw}\r")
        # The agent's view says: hidden input.
        await until(lambda: live.viewer.hidden, 5, what="hidden input on the agent's view")
        # While the secret is read, the agent cannot type...
        await live.carol.send_keys(live.session, grant, b"agent-guess\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "secret-input"
        # ...and what the user types goes nowhere but the pty.
        live.pty.write(b"hunter2\r")
        await live.wait_pty(b"length-7")
        await until(lambda: not live.viewer.hidden, 5, what="the agent's view to show again")
        await until(lambda: any("length-7" in line for line in live.viewer.emulator.text()),
                    5, what="length-7 on the agent's view")
        await live.carol.end(live.session, "password reset", True)
    assert broker.hub is not None
    cast = broker.config.recordings / f"{live.session}.cast"
    text = cast.read_text()
    assert "[hidden input]" in text and "length-7" in text
    assert "hunter2" not in text and "agent-guess" not in text
    assert "hidden-input" in audit_actions(broker, live.session)


async def test_a_privacy_pause_hides_everything_and_refuses_keys(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        session = live.user.user_session
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        assert session.toggle_pause()
        # Here first: the guard refuses at once, before the agent hears of it.
        assert session.paused and live.guard.paused
        trust = session.trust()
        assert trust is not None and trust.paused and not trust.hidden
        await until(lambda: live.viewer.paused, 5, what="the pause on the agent's view")
        live.pty.write(b"echo private-$((6*7))\r")
        await live.wait_pty(b"private-42")
        await live.carol.send_keys(live.session, grant, b"echo agent-$((1+1))\r")
        refused = await live.agent_event(m.KeysRefused)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "paused"
        # A fresh picture asked for now is not sent either.
        await live.carol.resync(live.session)
        await asyncio.sleep(0.3)
        assert not any("private-42" in line for line in live.viewer.emulator.text())
        assert not session.toggle_pause()
        await until(lambda: not live.viewer.paused, 5, what="the agent's view to come back")
        live.pty.write(b"echo after-$((2+3))\r")
        await until(lambda: any("after-5" in line for line in live.viewer.emulator.text()),
                    5, what="after-5 on the agent's view")
        assert b"agent-2" not in live.pty_out
        # What was printed during the pause stays blank in the picture after it.
        assert not any("private-42" in line for line in live.viewer.emulator.text())
        await live.carol.end(live.session, "privacy", True)
    cast = broker.config.recordings / f"{live.session}.cast"
    text = cast.read_text()
    assert "[paused by the user]" in text and "[sharing resumed]" in text and "after-5" in text
    assert "private" not in text and "agent-2" not in text
    actions = audit_actions(broker, live.session)
    assert actions.count("privacy-pause") == 2 and "hidden-input" not in actions


async def test_totp_verification(broker: Broker, keys: dict[str, KeyPair]) -> None:
    secret = pyotp.random_base32()
    assert broker.store is not None
    broker.store.directory.set_totp("alice", secret)
    async with live_session(broker, keys) as live:
        await live.carol.verify(live.session, "totp")
        await until(lambda: live.asks, 5, what="the code asked")
        assert isinstance(live.asks.pop(), m.AskCode)
        live.guard.code("000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
        wrong = await live.agent_event(m.Verified)
        assert isinstance(wrong, m.Verified) and not wrong.ok and "tries left" in wrong.message
        # The user is told too, in words.
        await until(lambda: [e for e in live.user.events if isinstance(e, Verification)],
                    what="the user to hear of the wrong code")
        (told,) = [e for e in live.user.events if isinstance(e, Verification)]
        assert told.text == "Verification failed: the code did not match; 2 tries left."
        live.guard.code(pyotp.TOTP(secret).now())
        right = await live.agent_event(m.Verified)
        assert isinstance(right, m.Verified) and right.ok and right.method == "totp"
        records = [r for r in broker.store.audit.records(live.session) if r.action == "verify"]
        assert [r.data["ok"] for r in records] == [False, True]
        assert secret not in str([r.data for r in broker.store.audit.records()])


async def test_attestation_needs_a_note(broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        with pytest.raises(BrokerError, match="attestation note"):
            await live.carol.verify(live.session, "attest", "  ")
        await live.carol.verify(live.session, "attest", "called back on the desk phone")
        verified = await live.agent_event(m.Verified)
        assert isinstance(verified, m.Verified) and verified.ok
        assert broker.hub is not None and broker.hub.session(live.session).verified


async def test_annotations_need_a_grant(broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        mark = m.Annotation(id="a1", kind="box", x=0, line=0, x2=5, line2=0, text="here")
        with pytest.raises(BrokerError, match="not granted"):
            await live.carol.annotate(live.session, "none", mark)
        grant = await live.grant("annotate")
        await live.carol.annotate(live.session, grant, mark)
        await until(lambda: live.annotations, 5, what="the mark drawn")
        shown = live.annotations.pop()
        assert isinstance(shown, m.Annotate) and shown.annotation == mark
        live.guard.revoke_all()
        await asyncio.sleep(0.2)
        # A mark the broker let through after a revoke is still not drawn.
        live.guard.handle(m.Annotate(session=live.session, grant=grant, annotation=mark))
        assert live.annotations == []


async def test_redaction_happens_before_bytes_leave(broker: Broker,
                                                    keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys, redact=(r"tok-[0-9a-f]{8}",)) as live:
        await live.wait_pty(b"$ ")
        live.pty.write(b"echo tok-$((16#deadbeef))x; printf 'tok-%s\\n' cafe0123\r")
        await live.wait_pty(b"tok-cafe0123")
        await until(lambda: any("[redacted]" in line for line in live.viewer.emulator.text()),
                    5, what="[redacted] on the agent's view")
        # The typed command shows the pieces; the printed token never leaves.
        assert not any("tok-cafe0123" in line for line in live.viewer.emulator.text())
        await live.carol.end(live.session, "token", True)
    cast = broker.config.recordings / f"{live.session}.cast"
    assert "tok-cafe0123" not in cast.read_text()


@pytest.mark.skipif(shutil.which("asciinema") is None, reason="asciinema is not installed")
async def test_session_recording_plays_with_asciinema_and_audit_verifies(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        await live.verify_by_key()
        grant = await live.grant("control", 60)
        await live.carol.send_keys(live.session, grant, b"echo recorded-$((20+1))\r")
        await live.wait_pty(b"recorded-21")
        await asyncio.sleep(0.2)
        await live.carol.end(live.session, "demo", True)
    cast = broker.config.recordings / f"{live.session}.cast"
    await until(lambda: "session ended" in cast.read_text(), 5, what="the end recorded")
    assert "agent:carol typed" in cast.read_text()
    result = asciinema_cat(cast, tmp_path / "asciinema")
    assert result.returncode == 0, result.stderr
    assert b"recorded-21" in result.stdout
    # The audit chain of this real session verifies; a tampered copy does not.
    assert broker.store is not None
    assert broker.store.audit.verify().records > 5
    db = broker.store.path
    check = subprocess.run([sys.executable, "-m", "assist", "audit", "verify", "--db", db],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert "audit log intact" in check.stdout
    tamper(db, "UPDATE audit SET data = '{\"bytes\":1,\"grant\":\"x\"}' WHERE action = 'keys'")
    check = subprocess.run([sys.executable, "-m", "assist", "audit", "verify", "--db", db],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 1
    assert "was changed after it was written" in check.stderr


async def test_recording_can_be_turned_off_by_policy(tmp_path: Path,
                                                     keys: dict[str, KeyPair]) -> None:
    from tests.helpers import broker_config, register

    server = Broker(broker_config(tmp_path / "norec", record=False))
    await server.start()
    try:
        register(server, "user", "alice", keys["alice"])
        register(server, "agent", "carol", keys["carol"])
        async with live_session(server, keys) as live:
            await live.wait_pty(b"$ ")
            await live.carol.end(live.session, "no recording", True)
        assert not server.config.recordings.exists()
    finally:
        await server.stop()


async def test_a_refusal_by_policy_is_not_audited_as_the_users_no(
        tmp_path: Path, keys: dict[str, KeyPair]) -> None:
    from tests.helpers import broker_config, register

    # A broker that lets the question through; the user's machine still says no.
    server = Broker(broker_config(tmp_path / "lax", require_verification=False))
    await server.start()
    try:
        register(server, "user", "alice", keys["alice"])
        register(server, "agent", "carol", keys["carol"])
        async with live_session(server, keys) as live:
            await live.carol.ask_grant(live.session, "control", 60)
            answer = await live.agent_event(m.GrantAnswer)
            assert isinstance(answer, m.GrantAnswer) and not answer.allowed
            assert answer.reason == "not-verified" and live.asks == []
        assert server.store is not None
        (deny,) = [r for r in server.store.audit.records(live.session) if r.action == "deny"]
        assert deny.data["by"] == "policy"
    finally:
        await server.stop()
