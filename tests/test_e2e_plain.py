"""End to end in tmux: `assist help --no-tui` is a whole client on a plain terminal.

Chat both ways, a y/N question for each permission (No unless y, and a yes
typed too soon does not count), r revokes everything at once, and the
survey answer is stored.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from assist.broker.server import Broker
from assist.protocol import messages as m
from tests.helpers import KeyPair, agent_client, until
from tests.tmux import Tmux, assist_cmd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]


async def test_a_plain_terminal_user_answers_chats_revokes_and_rates(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    tmux = Tmux()
    events: list[m.Msg] = []
    try:
        user = assist_cmd("help", "vpn", "--no-tui", "--broker", f"127.0.0.1:{broker.port}",
                          "--key", str(keys["alice"].private), "--yes")
        await tmux.start("user", f"{user}; echo EXIT=$?; sleep 30", 120, 40)
        await tmux.wait_for("user", "Waiting for an agent")
        carol = await agent_client(broker, keys["carol"])
        info = await carol.accept()

        async def pump() -> None:
            async for event in carol.events():
                events.append(event)

        pumping = asyncio.ensure_future(pump())
        await tmux.wait_for("user", "r and Enter revokes every permission")
        await carol.verify(info.session, "key")
        await carol.ask_grant(info.session, "control", 300)
        await tmux.wait_for("user", "carol asks to type in your terminal, for 5 minutes. "
                                    "Allow? [y/N]")
        await tmux.keys("user", "y", "Enter")  # at once: not armed yet
        await tmux.wait_for("user", "Too quick")
        await asyncio.sleep(1.1)
        await tmux.keys("user", "y", "Enter")
        await tmux.wait_for("user", "Allowed: control")
        await until(lambda: any(isinstance(e, m.GrantAnswer) and e.allowed for e in events),
                    what="carol to hear yes")
        await carol.ask_grant(info.session, "annotate")
        await tmux.wait_for("user", "draw on your screen")
        await asyncio.sleep(1.1)
        await tmux.keys("user", "Enter")  # No is the default
        await tmux.wait_for("user", "Declined: annotate")

        await carol.chat(info.session, "hello alice")
        await tmux.wait_for("user", "carol: hello alice")
        await tmux.keys("user", "-l", "thanks carol")
        await tmux.keys("user", "Enter")
        await until(lambda: any(isinstance(e, m.Chat) and e.text == "thanks carol"
                                for e in events), what="carol to read the chat")
        await tmux.keys("user", "r", "Enter")
        await tmux.wait_for("user", "Revoked 1 permission")
        await until(lambda: any(isinstance(e, m.Revoke) for e in events),
                    what="carol to hear the revoke")

        await carol.end(info.session, "vpn profile", True)
        await tmux.wait_for("user", "How satisfied")
        await tmux.keys("user", "4", "Enter")
        screen = await tmux.wait_for("user", "EXIT=")
        assert "EXIT=0" in screen and "Traceback" not in screen
        assert broker.store is not None
        await until(lambda: broker.store is not None
                    and broker.store.sessions.csat(info.session) == 4, what="the survey")
        pumping.cancel()
        await carol.link.close()
    finally:
        await tmux.kill()
