"""The user's side of a session, :class:`UserSession`, with a real broker and a real pty.

Its parts (terminal share, guard, desktop share) start with the agent and
stop once, whichever way the session goes; a question of a session that is
over cannot be answered; a dropped connection comes back with the grants
still announced.
"""

from __future__ import annotations

import asyncio

import pytest

from assist.broker.server import Broker
from assist.client.desktop import DesktopRequest
from assist.client.link import BrokerError
from assist.client.user_events import (
    AgentGone,
    ChatLine,
    DesktopChanged,
    GrantAsked,
    Marked,
    MarksCleared,
    PtyExited,
    Revoked,
    StatusChanged,
    TrustChanged,
    UserEvent,
)
from assist.protocol import messages as m
from assist.share.pty import AGENT_QUEUE
from tests.helpers import KeyPair, agent_client, until
from tests.user_side import Live, live_session, waiting_user
from tests.xvfb import Xvfb


def count(events: list[UserEvent], kind: type, **fields: object) -> int:
    return sum(1 for e in events if isinstance(e, kind)
               and all(getattr(e, k) == v for k, v in fields.items()))


async def _agent_ends(live: Live) -> None:
    await live.carol.end(live.session, "done", True)
    await until(lambda: live.user.statuses[-1].phase == "ended", what="the end")


async def _agent_drops(live: Live) -> None:
    await live.carol.link.close()
    await until(lambda: "back at the front" in live.user.statuses[-1].message,
                what="back in the queue")


async def _user_leaves(live: Live) -> None:
    await live.user.user_session.leave()


async def _closed(live: Live) -> None:
    await live.user.user_session.close()


@pytest.mark.parametrize("way_out", [_agent_ends, _agent_drops, _user_leaves, _closed],
                         ids=["agent-ends", "agent-drops", "user-leaves", "closed"])
async def test_every_way_out_stops_share_guard_and_desktop_once(
        screen: Xvfb, broker: Broker, keys: dict[str, KeyPair], way_out: object) -> None:
    async with live_session(broker, keys, desktop=DesktopRequest()) as live:
        session = live.user.user_session
        share, guard, desktop = live.share, live.guard, session.desktop
        assert desktop is not None
        # The desktop is offered: its capture is running.
        offer = await live.agent_event(m.Signal, timeout=15)
        assert isinstance(offer, m.Signal) and offer.kind == "offer"
        await live.grant("annotate")
        await way_out(live)  # type: ignore[operator]
        await until(lambda: count(live.user.events, DesktopChanged, state="ended") == 1,
                    what="the desktop share to end")
        assert not session.in_session and session.desktop is None
    # And the final close stopped nothing a second time.
    events = live.user.events
    assert count(events, AgentGone) == 1
    assert count(events, DesktopChanged, state="ended") == 1
    assert not share.active and not guard.active
    assert guard.table.live(guard.clock()) == []  # every grant died with the session
    assert desktop.share is not None and desktop.share.ended
    pty = session.pty
    assert pty is not None
    await until(lambda: not pty.running, what="the shell hung up")


async def test_leaving_stops_the_desktop_before_anything_else(
        screen: Xvfb, broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys, desktop=DesktopRequest()) as live:
        await live.agent_event(m.Signal, timeout=15)
        await live.user.user_session.leave()
        events = live.user.events
        ended = next(i for i, e in enumerate(events)
                     if isinstance(e, DesktopChanged) and e.state == "ended")
        gone = next(i for i, e in enumerate(events) if isinstance(e, AgentGone))
        left = next(i for i, e in enumerate(events)
                    if isinstance(e, StatusChanged) and e.status.phase == "left")
        assert ended < gone < left
        assert live.user.runner is not None
        final = await live.user.runner  # leaving is not an error
        assert final.phase in ("left", "ended")  # the broker may confirm the end first
        bye = await live.agent_event(m.Signal)
        assert isinstance(bye, m.Signal) and bye.kind == "bye"


async def test_a_question_of_a_session_that_is_over_is_ignored(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        session = live.user.user_session
        old = await live.ask("annotate")
        # carol's connection drops; dave takes the user from the front of the queue.
        await live.carol.link.close()
        await until(lambda: not session.in_session, what="carol gone")
        dave = await agent_client(broker, keys["dave"])
        answered = asyncio.ensure_future(dave.link.wait_for(
            lambda msg: isinstance(msg, m.GrantAnswer), 1))
        await dave.accept()
        await until(lambda: session.in_session, what="dave with the user")
        # The user says yes to carol's old question: nothing is granted to dave.
        assert session.answer(old, True) == ""
        assert session.guard is not None and session.guard.table.live(0) == []
        with pytest.raises(Exception, match="nothing happened"):
            await answered
        # A fresh question is answerable, once.
        await dave.ask_grant(live.session, "annotate")
        await until(lambda: live.asks, what="dave's question")
        ask = live.asks.pop()
        assert isinstance(ask, m.AskGrant) and ask.agent == "dave"
        assert session.answer(ask, True) != ""
        assert session.answer(ask, True) == ""
        await dave.end(live.session, "done", True)
        await until(lambda: not session.in_session, what="the end")
        assert session.answer(ask, True) == ""
        await dave.link.close()


async def test_a_resumed_connection_announces_the_grants_again(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        session = live.user.user_session
        grant = await live.grant("annotate")
        client = session.request.client
        assert client is not None
        client.link.channel.close()  # the network drops under the user's app
        restored = await live.agent_event(m.GrantAnswer, timeout=15)
        assert isinstance(restored, m.GrantAnswer)
        assert restored.restored and restored.grant == grant and restored.allowed
        await until(lambda: session.status.message == "reconnected: the session goes on",
                    what="the session to go on")
        # The broker knows the grant again: carol may draw with it.
        mark = m.Annotation(id="r1", kind="label", x=1, line=1, text="still here")
        await live.carol.annotate(live.session, grant, mark)
        await until(lambda: live.annotations, what="the mark")
        assert count(live.user.events, AgentGone) == 0  # nothing stopped meanwhile


async def test_revoking_takes_the_grants_and_the_marks_at_once(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        session = live.user.user_session
        await live.verify_by_key()
        control = await live.grant("control", 300)
        annotate = await live.grant("annotate")
        trust = session.trust()
        assert trust is not None and trust.verified and "control 4:" in trust.grants
        live.user.events.clear()
        assert session.revoke_all() == 2
        # Here first: nothing the agent sends from now on is typed.
        assert live.guard.table.live(live.guard.clock()) == []
        events = live.user.events
        assert [type(e) for e in events] == [TrustChanged, MarksCleared, Revoked]
        revoked = events[-1]
        assert isinstance(revoked, Revoked) and set(revoked.grants) == {control, annotate}
        refused = await live.agent_event(m.Revoke)
        assert isinstance(refused, m.Revoke) and set(refused.grants) == {control, annotate}
        trust = session.trust()
        assert trust is not None and trust.grants == ""


async def test_without_a_shell_the_session_still_guards_and_chats(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys, argv=None) as live:
        session = live.user.user_session
        assert session.pty is None and session.share is None and session.guard is not None
        await live.carol.link.send(m.Chat(session=live.session, text="hello alice"))
        await until(lambda: count(live.user.events, ChatLine, sender="carol",
                                  text="hello alice"), what="the chat line")
        assert await session.say("hi carol")
        await until(lambda: any(isinstance(e, m.Chat) and e.text == "hi carol"
                                for e in live.agent_events), what="carol to read it")
        await live.carol.ask_grant(live.session, "annotate", 60)
        await until(lambda: count(live.user.events, GrantAsked), what="the question")
        mark = m.Annotation(id="n1", kind="label", x=1, line=1, text="x")
        with pytest.raises(Exception, match="not granted"):
            await live.carol.annotate(live.session, "none", mark)
        assert count(live.user.events, Marked) == 0


async def test_the_shell_ending_is_reported_and_leaving_the_queue_is_no_error(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with waiting_user(broker, keys["alice"], "shell") as user:
        await until(lambda: user.statuses and user.statuses[-1].phase == "queued",
                    what="queued")
        await user.wait_pty(b"$ ")
        user.user_session.write(b"exit 3\r")
        await until(lambda: count(user.events, PtyExited), what="the shell's end")
        assert count(user.events, PtyExited, status=3) == 1
        await user.user_session.leave()
        assert user.runner is not None
        final = await user.runner
        assert final.phase == "left" and final.message == "you left the queue"
    assert broker.hub is not None and len(broker.hub.queue) == 0


async def test_keys_the_pty_cannot_queue_are_refused(broker: Broker,
                                                     keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        await live.wait_pty(b"$ ")
        session = live.user.user_session
        assert session.pty is not None and session.guard is not None
        # Keys that wait for the program are checked again at delivery.
        assert session.pty.agent_may_type == session.guard.keys_allowed
        await live.verify_by_key()
        grant = await live.grant("control", 300)
        await live.carol.send_keys(live.session, grant, b"sleep 3\r")
        await live.wait_pty(b"sleep 3\r\n")
        burst = (b"x" * 63 + b"\n") * (m.MAX_KEYS // 64)  # whole lines: none is discarded
        for _ in range(AGENT_QUEUE // m.MAX_KEYS + 2):  # more than the pty may hold
            await live.carol.send_keys(live.session, grant, burst)
        refused = await live.agent_event(m.KeysRefused, timeout=10)
        assert isinstance(refused, m.KeysRefused) and refused.reason == "input-full"
        assert session.pty.queued_input <= AGENT_QUEUE


async def test_asking_again_stacks_no_second_question_on_the_user(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with live_session(broker, keys) as live:
        session = live.user.user_session
        await live.carol.ask_grant(live.session, "annotate", 60)
        await until(lambda: count(live.user.events, GrantAsked) == 1, what="the question")
        # The broker refuses a second ask while the first is open...
        with pytest.raises(BrokerError, match="already being asked for annotate"):
            await live.carol.ask_grant(live.session, "annotate", 60)
        # ...and the user's side shows one question per scope even if more come.
        assert session.guard is not None
        for _ in range(20):
            session.guard.handle(m.AskGrant(session=live.session, scope="annotate",
                                            seconds=60, agent="carol"))
        assert count(live.user.events, GrantAsked) == 1
        # Once answered, carol may ask again.
        ask = next(e.ask for e in live.user.events if isinstance(e, GrantAsked))
        session.answer(ask, False)
        await live.agent_event(m.GrantAnswer)
        await live.carol.ask_grant(live.session, "annotate", 60)
        await until(lambda: count(live.user.events, GrantAsked) == 2, what="the new question")
