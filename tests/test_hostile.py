"""Hostile text, both ways: nothing one party gives acts on the other's terminal.

A catalogue of payloads (OSC 52 clipboard writes, OSC 0/2 titles, CSI 2J,
DCS queries, C1 controls, bidi overrides, Rich/Textual markup, very long
lines) goes through every field one party fills in and the other sees:
topic, host and OS user, chat both ways, mark labels, verification notes,
handoff notes, root causes, and the user's shell output.

Two layers, each tested on its own: the broker takes control characters
out where text enters it (:func:`test_every_field_reaches_the_other_party_as_text`);
and with that cleaning switched off (:func:`unguarded`), every display point
(``assist console``, ``assist help``, ``assist help --no-tui``, ``assist
queue``, ``assist agent queue``, ``assist agent accept``, ``assist replay``)
still shows the text as text: real tmux panes with ``set-clipboard on`` keep
their title and get no paste buffer, and printed bytes hold no ESC, C1 or
bidi control. A positive control proves that the tmux check sees both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import AsyncIterator

import pytest

from assist.broker import hub, relay, trust
from assist.broker.server import Broker
from assist.client import UserClient
from assist.client.user_events import ChatLine
from assist.protocol import messages as m
from tests.helpers import KeyPair, agent_client, link_to, until
from tests.tmux import SHELL, Tmux, allow, assist_cmd
from tests.user_side import live_session

pytestmark = pytest.mark.slow
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")

PAYLOADS: dict[str, str] = {
    "clipboard": "\x1b]52;c;cHduZWQ=\x07",
    "clipboard-st": "\x1b]52;p;cHduZWQ=\x1b\\",
    "title": "\x1b]0;pwned-title\x07\x1b]2;pwned-title\x1b\\",
    "clear": "\x1b[2J\x1b[H\x1b[3J",
    "dcs": "\x1bP+q544e\x1b\\",
    "c1": "\x9b2J\x9d2;pwned-title\x9c\x90+q544e\x9c",
    "bidi": "abc\u202eevil\u202c\u2066x\u2069\u200b",
    "controls": "\x00\x07\x08\x0b\x0c\x0d\x7f",
    "markup": "[/] [@click=app.quit]quit[/] [b red]verified[/]",
}
"""What a hostile party puts in a field, by name."""

END = "END-OF-HOSTILE"
"""The last word of every hostile text: seen, it proves the whole text came."""

DANGER = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
"""Characters that must never reach a terminal from someone else's text."""


def hostile(limit: int) -> str:
    """Every payload in one text of exactly ``limit`` characters: a long line, then :data:`END`."""
    body = " ".join(f"<{name}>{payload}" for name, payload in PAYLOADS.items())
    body = body[: limit - len(END) - 2]
    return f"{body} {'L' * (limit - len(body) - len(END) - 2)} {END}"


def inert(text: str) -> bool:
    """``text`` holds nothing a terminal acts on (line breaks and tabs are fine)."""
    return DANGER.search(text) is None


@pytest.fixture
def unguarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker passes text on as it came: each display point must hold by itself."""
    def keep(text: str, limit: int = 0) -> str:
        return text

    for module in (hub, relay, trust):
        for name in ("one_line", "printable"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, keep)


# -- the broker: text is text where it enters ------------------------------------------


async def hostile_user(broker: Broker, key: KeyPair) -> UserClient:
    """A user whose host, OS user and topic are all hostile, waiting in the queue."""
    user = UserClient(await link_to(broker, "user", key))
    await user.hello(host=hostile(m.MAX_NAME), os_user=hostile(m.MAX_NAME))
    await user.join(hostile(m.MAX_TOPIC))
    return user


async def offered(user: UserClient) -> m.SessionInfo:
    """The user takes the agent's offer: the session starts."""
    await user.link.wait_for(lambda e: isinstance(e, m.Offered), 15)
    return await user.ready()


async def test_every_field_reaches_the_other_party_as_text(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    # The user's side (a raw client: nothing is cleaned on its way in).
    alice = await hostile_user(broker, keys["alice"])
    carol = await agent_client(broker, keys["carol"])
    (entry,) = (await carol.queue()).entries
    assert inert(entry.topic) and entry.topic.startswith("<clipboard>]52;c;cHduZWQ=")
    taken = asyncio.ensure_future(offered(alice))
    info = await carol.accept()
    await taken
    evidence = info.evidence
    assert evidence is not None
    assert all(inert(text) and text for text in (info.topic, evidence.host, evidence.os_user))
    said = asyncio.ensure_future(carol.link.wait_for(lambda e: isinstance(e, m.Chat), 10))
    await alice.link.send(m.Chat(session=info.session, text=hostile(m.MAX_TEXT)))
    chat = await said
    assert isinstance(chat, m.Chat) and inert(chat.text) and chat.text.startswith("<clip")
    # A handoff note reaches the user and the next agent.
    told = asyncio.ensure_future(alice.link.wait_for(lambda e: isinstance(e, m.AgentLost), 10))
    await carol.handoff(info.session, hostile(m.MAX_NOTE))
    lost = await told
    assert isinstance(lost, m.AgentLost) and inert(lost.reason) and "handed you on" in lost.reason
    dave = await agent_client(broker, keys["dave"])
    (entry,) = (await dave.queue()).entries
    assert inert(entry.note) and entry.note.startswith("<clipboard>")
    await alice.leave()
    for client in (alice, carol, dave):
        await client.link.close()

    # The agent's side: chat, mark label, attestation note, root cause.
    async with live_session(broker, keys) as live:
        grant = await live.grant("annotate")
        await live.carol.chat(live.session, hostile(m.MAX_TEXT))
        await live.carol.annotate(live.session, grant, m.Annotation(
            id="h1", kind="label", x=1, line=1, text=hostile(200)))
        await until(lambda: live.annotations, what="the mark")
        await until(lambda: any(isinstance(e, ChatLine) for e in live.user.events),
                    what="the chat line")
        (mark,) = live.annotations
        assert isinstance(mark, m.Annotate) and inert(mark.annotation.text)
        lines = [e.text for e in live.user.events if isinstance(e, ChatLine)]
        assert lines and all(inert(text) and text.startswith("<clip") for text in lines)
        await live.carol.verify(live.session, "attest", hostile(m.MAX_NOTE))
        await live.agent_event(m.Verified)
        await live.carol.end(live.session, hostile(m.MAX_NOTE))
    assert broker.store is not None
    tags = broker.store.sessions.root_causes()
    assert tags and all(inert(tag) for tag in tags)
    records = [json.dumps(r.data) for r in broker.store.audit.records(live.session)]
    assert any("<clipboard>" in r for r in records), "the note is audited"
    assert not any("\\u001b" in r or "\\u202e" in r for r in records)


# -- real terminals: nothing reaches them but text ----------------------------------------


class Watch:
    """tmux panes that would show a clipboard write (a paste buffer) or a new title."""

    def __init__(self, tmux: Tmux) -> None:
        self.tmux = tmux
        self.titles: dict[str, str] = {}

    async def start(self, name: str, command: str, width: int = 160, height: int = 45) -> None:
        await self.tmux.start(name, command, width, height)
        # tmux takes OSC 52 from a program into a paste buffer (as xterm would
        # into the clipboard): a write is seen there.
        await self.tmux.run("set-option", "-s", "set-clipboard", "on")
        self.titles[name] = await self.title(name)

    async def title(self, name: str) -> str:
        return (await self.tmux.run("display-message", "-p", "-t", name,
                                    "#{pane_title}")).strip()

    async def buffers(self) -> str:
        return await self.tmux.run("list-buffers")

    async def untouched(self) -> None:
        """No pane got a clipboard write or a new title, and every app still runs."""
        assert await self.buffers() == "", "a clipboard write reached a terminal"
        for name, before in self.titles.items():
            now = await self.title(name)
            assert now == before, f"{name}'s title changed to {now!r}"
            dead = await self.tmux.run("display-message", "-p", "-t", name, "#{pane_dead}")
            assert dead.strip() != "1", f"{name} is gone"
            # Nor is a control or format character left in any cell of the screen.
            screen = await self.tmux.screen(name)
            assert inert(screen), f"{name} shows {DANGER.findall(screen)!r}"


@contextlib.asynccontextmanager
async def watched() -> AsyncIterator[Watch]:
    tmux = Tmux()
    try:
        yield Watch(tmux)
    finally:
        await tmux.kill()


def then_wait(*commands: str) -> str:
    """A pane that runs ``commands`` one after another, says it is done, and stays."""
    script = "; ".join(commands) + "; echo CLI-DONE; sleep 60"
    return f"sh -c {shlex.quote(script)}"


@needs_tmux
async def test_the_watch_sees_a_clipboard_write_and_a_title() -> None:
    # The positive control: a program that does write them is caught.
    async with watched() as watch:
        await watch.start("control", then_wait(
            "sleep 0.5", r"printf '\033]2;pwned-title\007\033]52;c;cHduZWQ=\007'"))
        await watch.tmux.wait_for("control", "CLI-DONE")
        assert await watch.title("control") == "pwned-title"
        assert await watch.buffers() != ""
        with pytest.raises(AssertionError, match="clipboard"):
            await watch.untouched()
        await watch.tmux.run("delete-buffer")
        with pytest.raises(AssertionError, match="title changed"):
            await watch.untouched()


def shell_output() -> bytes:
    """What a hostile program prints in the user's shared terminal (7- and 8-bit forms)."""
    return ("".join(PAYLOADS.values()).encode() + b"\x9b2J\x9d2;pwned-title\x07"
            + b"\r\nshell-" + END.encode() + b"\r\n")


@needs_tmux
async def test_a_hostile_user_reaches_the_console_and_the_cli_as_text(
        unguarded: None, broker: Broker, keys: dict[str, KeyPair]) -> None:
    address = f"127.0.0.1:{broker.port}"
    agent = ("--broker", address, "--key", str(keys["carol"].private), "--yes")
    alice = await hostile_user(broker, keys["alice"])
    async with watched() as watch:
        await watch.start("queue", then_wait(assist_cmd("queue", *agent),
                                             assist_cmd("agent", "queue", *agent)))
        await watch.tmux.wait_for("queue", "CLI-DONE")
        screen = await watch.tmux.screen("queue")
        assert "<clipboard>]52;c;cHduZWQ=" in screen and "[b red]verified[/]" in screen

        await watch.start("agent", then_wait(assist_cmd("console", *agent)))
        await watch.tmux.wait_for("agent", "<clipboard>")
        taken = asyncio.ensure_future(offered(alice))
        await watch.tmux.keys("agent", "Enter")
        info = await taken
        await watch.tmux.wait_for("agent", "alice ·")
        await alice.link.send(m.Output(session=info.session, data=shell_output()))
        await alice.link.send(m.Chat(session=info.session, text=hostile(m.MAX_TEXT)))
        await watch.tmux.wait_for("agent", f"shell-{END}")
        await watch.tmux.wait_for("agent", END + "\n")  # the chat line, to its end
        await asyncio.sleep(1.2)  # a tick redraws header and evidence: still text
        await watch.untouched()
        assert "alice" in await watch.tmux.screen("agent")
        await alice.end()
        await watch.tmux.wait_for("agent", "0 waiting")  # back at the queue

        cast = broker.config.recordings / f"{info.session}.cast"
        await until(lambda: cast.exists() and END in cast.read_text(), 5,
                    what="the recording")
        played = "".join(e[2] for e in map(json.loads, cast.read_text().splitlines()[1:])
                         if e[1] == "o")
        assert "\x1b]" not in played and "\x9d" not in played and "\x1bP" not in played
        await watch.start("replay", then_wait(assist_cmd("replay", str(cast), "--speed", "50",
                                                         "--no-markers")))
        await watch.tmux.wait_for("replay", "CLI-DONE")
        await watch.untouched()
    await alice.link.close()


@needs_tmux
async def test_a_hostile_agent_reaches_assist_help_as_text(
        unguarded: None, broker: Broker, keys: dict[str, KeyPair]) -> None:
    async with watched() as watch:
        await watch.start("user", assist_cmd(
            "help", "vpn", "--broker", f"127.0.0.1:{broker.port}", "--key",
            str(keys["alice"].private), "--yes", "--cmd", SHELL), 100, 30)
        await watch.tmux.wait_for("user", "Waiting for an agent")
        carol = await agent_client(broker, keys["carol"])
        info = await carol.accept()
        await watch.tmux.wait_for("user", "verified by test-broker")
        await carol.chat(info.session, hostile(m.MAX_TEXT))
        await watch.tmux.wait_for("user", END)
        await carol.ask_grant(info.session, "annotate")
        await watch.tmux.wait_for("user", "carol asks to draw")
        await allow(watch.tmux)
        grant = (await carol.wait_grant(info.session, "annotate", 10)).grant
        for line, (name, payload) in enumerate(PAYLOADS.items(), start=1):
            await carol.annotate(info.session, grant, m.Annotation(
                id=f"h{line}", kind="label", x=1, line=line, text=f"{payload}{name}-END"))
        await watch.tmux.wait_for("user", "bidi-END")
        await watch.tmux.wait_for("user", "[b red]verified[/]markup-")
        await watch.untouched()
        await carol.handoff(info.session, hostile(m.MAX_NOTE))
        await watch.tmux.wait_for("user", "handed you on")
        await asyncio.sleep(0.5)
        await watch.untouched()
        await carol.link.close()


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assist", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=os.environ.copy())


async def _read_until(stream: asyncio.StreamReader, needle: bytes, seen: bytearray) -> None:
    async with asyncio.timeout(20):
        while needle not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}; got:\n{seen.decode()}")
            seen += line


def printed_text(out: bytes) -> str:
    """What a command printed, checked to be text only."""
    assert b"\x1b" not in out, "an escape sequence was printed"
    text = out.decode()
    assert inert(text), "a control character was printed"
    return text


async def test_printed_lines_hold_text_only(
        unguarded: None, broker: Broker, keys: dict[str, KeyPair]) -> None:
    address = f"127.0.0.1:{broker.port}"
    agent = ("--broker", address, "--key", str(keys["carol"].private), "--yes")
    # The user's plain lines: chat and the end, from a hostile agent.
    user = await _spawn("help", "vpn", "--no-tui", "--broker", address, "--key",
                        str(keys["alice"].private), "--yes")
    assert user.stdout is not None
    out = bytearray()
    await _read_until(user.stdout, b"position 1", out)
    carol = await agent_client(broker, keys["carol"])
    info = await carol.accept()
    await carol.chat(info.session, hostile(m.MAX_TEXT))
    await _read_until(user.stdout, END.encode(), out)
    await carol.end(info.session, hostile(m.MAX_NOTE))
    out += await asyncio.wait_for(user.stdout.read(), 20)
    assert await user.wait() == 0
    assert "Session ended" in printed_text(bytes(out))
    await carol.link.close()

    # The agent's lines, tables and JSON, from a hostile user.
    bob = await hostile_user(broker, keys["bob"])
    for command in (("queue", *agent), ("agent", "queue", *agent)):
        proc = await _spawn(*command)
        listing, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert "<clipboard>" in printed_text(listing)
    proc = await _spawn("queue", "--json", *agent)
    listing, _ = await proc.communicate()
    assert b"\x1b" not in listing  # escaped as \u001b, and exact once parsed
    (entry,) = json.loads(listing)["entries"]
    assert entry["topic"] == hostile(m.MAX_TOPIC)

    taken = asyncio.ensure_future(offered(bob))
    accept = await _spawn("agent", "accept", *agent)
    assert accept.stdout is not None
    info = await taken
    await bob.link.send(m.Output(session=info.session, data=shell_output()))
    await bob.link.send(m.Chat(session=info.session, text=hostile(m.MAX_TEXT)))
    out = bytearray()
    await _read_until(accept.stdout, END.encode(), out)
    await bob.end()
    out += await asyncio.wait_for(accept.stdout.read(), 20)
    await accept.wait()
    assert "<clipboard>" in printed_text(bytes(out))
    await bob.link.close()
