"""The Textual apps driven by Pilot against a real broker."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from assist.broker.server import Broker
from assist.client import UserClient
from assist.config import ClientConfig
from assist.protocol import messages as m
from assist.tui.console_app import ConsoleApp
from assist.tui.help_app import HelpApp
from assist.tui.terminal import TerminalView
from tests.helpers import KeyPair, agent_client, until, user_client


def client_config(broker: Broker, key: KeyPair, tmp: Path) -> ClientConfig:
    return ClientConfig(host="127.0.0.1", port=broker.port, host_key=broker.public_key,
                        voice=False, audio=(),
                        key=key.private, file=tmp / "client.toml", state=tmp / "state")


async def accept_first(app: ConsoleApp, pilot: Any, alice: UserClient, cols: int = 80,
                       rows: int = 24) -> None:
    """The console's agent accepts the one waiting user, who takes the offer."""
    table = app.query_one("#queue", DataTable)
    await until(lambda: table.row_count == 1)
    offered = asyncio.ensure_future(alice.link.wait_for(
        lambda msg: isinstance(msg, m.Offered), 10))
    table.focus()
    await pilot.press("enter")
    await offered
    await alice.ready(cols=cols, rows=rows)
    await until(lambda: app.info is not None)


async def test_console_accepts_and_shows_the_users_terminal(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    alice = await user_client(broker, keys["alice"])
    queued = await alice.join("disk full")
    app = ConsoleApp(client_config(broker, keys["carol"], tmp_path))
    async with app.run_test(size=(140, 40)) as pilot:
        await accept_first(app, pilot, alice, 60, 10)
        await alice.link.send(m.Output(session=queued.session, data=b"df -h\r\n/dev/sda1 100%"))
        view = app.query_one("#screen", TerminalView)
        await until(lambda: any("/dev/sda1 100%" in line for line in view.emulator.text()))
        assert view.emulator.size == (60, 10)
    await alice.link.close()


async def test_help_app_runs_the_shell_and_meets_the_agent(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    app = HelpApp(client_config(broker, keys["alice"], tmp_path), "vpn",
                  ["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: app.request is not None and app.request.status.phase == "queued")
        await pilot.press(*"echo hi-$((6*7))", "enter")
        await until(lambda: any("hi-42" in line for line in app.emulator.text()))
        carol = await agent_client(broker, keys["carol"])
        outputs: list[bytes] = []

        def seen(msg: m.Msg) -> bool:
            if isinstance(msg, m.Snapshot | m.Output):
                outputs.append(msg.data)
            return b"from-agent-view" in b"".join(outputs)

        watcher = asyncio.ensure_future(carol.link.wait_for(seen, 15))
        info = await carol.accept()
        await until(lambda: app.share is not None)
        await pilot.press(*"echo from-agent-view", "enter")
        await watcher
        assert "verified by test-broker" in str(app.panel.query_one("#title").render())
        await carol.end(info.session, "vpn profile", resolved=True)
        await until(lambda: app.final is not None)
        await pilot.press("4")
        await until(lambda: broker.store is not None
                    and broker.store.sessions.csat(info.session) == 4)
        await carol.link.close()


async def test_console_shows_user_text_as_text_never_markup(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    from tests.helpers import link_to

    alice = UserClient(await link_to(broker, "user", keys["alice"]))
    await alice.hello(host="pc\n[b green]verified[/]", os_user="[/]")
    await alice.join("cannot write to [/tmp] [/]")
    app = ConsoleApp(client_config(broker, keys["carol"], tmp_path))
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.query_one("#queue", DataTable)
        await until(lambda: table.row_count == 1)
        assert "[/tmp] [/]" in str(table.get_row_at(0)[2])
        await accept_first(app, pilot, alice)
        await pilot.pause(1.2)  # a tick redraws the header and the evidence
        trust = str(app.query_one("#trust").render())
        assert "OS user [/]" in trust and "pc[b green]verified[/]" in trust
        assert app.error is None and app.is_running
    await alice.link.close()


async def test_the_console_fits_80x24_every_key_in_view_and_the_panel_folds(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    app = ConsoleApp(client_config(broker, keys["carol"], tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app.client is not None)
        await pilot.pause()
        shown = " ".join(" ".join("".join(s.text for s in strip).split())
                         for strip in app.screen._compositor.render_strips())
        for key in ("F5 away", "F2 chat", "F3 term", "F4 desk", "F6 id", "F7 draw",
                    "F8 type", "F9 clear", "F10 end", "F11 side"):
            assert key in shown, f"{key!r} is not on screen: {shown!r}"
        top = "".join(s.text for s in app.screen._compositor.render_strips()[0])
        assert "Ctrl-Q quits" in top
        side = app.query_one("#side")

        def width() -> float:
            assert side.styles.width is not None
            return side.styles.width.value

        assert side.display and width() == 40
        await pilot.press("f11")
        assert width() == 28
        await pilot.press("f11")
        assert not side.display  # the user's screen gets the whole width
        await pilot.press("f11")
        assert side.display and width() == 40


async def test_zero_brings_a_big_screen_back_to_its_corner(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    alice = await user_client(broker, keys["alice"])
    await alice.join("big screen")
    app = ConsoleApp(client_config(broker, keys["carol"], tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await accept_first(app, pilot, alice, 200, 60)
        box = app.query_one("#screen-box")
        view = app.query_one("#screen", TerminalView)
        await until(lambda: view.emulator.size == (200, 60))
        await pilot.pause()
        box.scroll_to(x=60, y=20, animate=False)
        await pilot.pause()
        assert box.scroll_x > 0
        view.focus()
        await pilot.press("0")
        await pilot.pause()
        assert (box.scroll_x, box.scroll_y) == (0, 0)
    await alice.link.close()


async def test_the_users_panel_keeps_out_of_the_cursors_way_and_folds_to_one_line(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    # The program puts the cursor at the top right, where the panel starts.
    app = HelpApp(client_config(broker, keys["alice"], tmp_path), "small screen",
                  ["sh", "-c", "sleep 1; printf '\\033[2;55Hhere'; sleep 30"])
    async with app.run_test(size=(60, 20)) as pilot:
        await until(lambda: any("here" in line for line in app.emulator.text()))
        await pilot.pause(0.3)
        x, y, _ = app.emulator.cursor
        assert (x, y) == (58, 1)
        assert not app.panel.region.contains(x, y), "the panel covers the cursor"
        await pilot.press("f3")
        await pilot.pause()
        await pilot.pause(0.2)
        assert app.panel.outer_size.height == 1
        title = str(app.panel.query_one("#title").render())
        assert "F3 opens" in title
        await pilot.press("f3")
        await pilot.pause()
        assert app.panel.outer_size.height > 3


async def test_the_console_backs_off_when_its_connection_keeps_dropping(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path,
        monkeypatch: Any) -> None:
    from assist.client.agent import AgentClient

    real = AgentClient.reconnect
    reconnects: list[float] = []

    async def flaky(self: AgentClient) -> m.Welcome:
        welcome = await real(self)
        reconnects.append(asyncio.get_running_loop().time())
        # Up, then down again at once: a broker that keeps failing after the hello.
        asyncio.get_running_loop().call_later(0.05, self.link.channel.close)
        return welcome

    monkeypatch.setattr(AgentClient, "reconnect", flaky)
    app = ConsoleApp(client_config(broker, keys["carol"], tmp_path))
    async with app.run_test(size=(140, 40)) as pilot:
        await until(lambda: app.client is not None and app.connection == "")
        assert app.client is not None
        app.client.link.channel.close()
        await pilot.pause(3.0)
        # 0.2, 0.5, 1, 2 s apart (each +-30%), not one attempt after another.
        assert 2 <= len(reconnects) <= 5, reconnects
        gaps = [b - a for a, b in itertools.pairwise(reconnects)]
        assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
        assert "next try in" in app.connection or app.connection == ""
        assert app.is_running
