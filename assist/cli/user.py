"""``assist help``: ask the helpdesk for help."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.text import Text

from assist.cli.app import VERBOSE_OPTION, app, out
from assist.cli.connect import (
    AUDIO_OPTION,
    BROKER_OPTION,
    KEY_OPTION,
    YES_OPTION,
    app_config,
    client_config,
    trust_prompt,
)
from assist.cli.line_mode import KEYS, LineMode
from assist.client.desktop import DesktopRequest, DesktopSender, describe_mark, parse_region
from assist.client.helpflow import Status
from assist.client.user_events import (
    CallChanged,
    ChatLine,
    CodeAsked,
    DesktopChanged,
    GrantAsked,
    Marked,
    Revoked,
    StatusChanged,
    UserEvent,
    Verification,
)
from assist.client.user_session import UserSession
from assist.config import ClientConfig, parse_audio, parse_codec
from assist.display import said
from assist.errors import ConfigError, ConnectionFailed
from assist.log import setup

HELP_EPILOG = """\
[b]Voice and face[/b]: once an agent answers you hear them and see their
camera (or their initials) in the panel; they never see you. They hear you
only if you allow your microphone when they ask (F9 takes it back with every
other permission). F12 mutes both ways; --no-voice makes no call at all.
Sound goes through PulseAudio or ALSA when present (--audio picks, none for
silence), and the panel says which. Pictures use Kitty graphics or Sixel
where the terminal has them, else coloured half-blocks
(ASSIST_GRAPHICS=kitty|sixel|halfcell|text overrides).

[b]Desktop sharing[/b] (--screen): once an agent answers, your desktop is
offered to them too. Both of you see the same six-digit verification code:
read it aloud to be sure nobody sits in between. In the app F6 pauses or
resumes the share and F7 stops it; F9 takes back every permission.

[b]--json-events[/b] (implies --no-tui) prints one JSON object per line on
stdout, for wrappers. Every line has "event" and "at" (Unix time). Events:
"status" (phase: connecting, queued, offered, connected, reconnecting,
ended, left, taken-over; with session, position, waiting, agent, broker,
message), "chat" (sender, text), "grant-asked" (scope, seconds, agent),
"code-asked" (agent), "verified" (method, ok, message), "annotation" (agent,
surface, kind, x, y, x2, y2, text, description), "revoked", "desktop"
(state, code, error), "call" (state, code, hearing, muted, error) and a last
"end" (phase, resolved, message).
"""


def status_event(status: Status) -> dict[str, Any]:
    """A status as a ``status`` JSON event."""
    return {"event": "status", "phase": status.phase, "session": status.session,
            "position": status.position, "waiting": status.waiting, "agent": status.agent,
            "broker": status.broker, "message": status.message}


def _annotation_event(event: Marked) -> dict[str, Any]:
    msg = event.mark
    a = msg.annotation
    return {"event": "annotation", "agent": msg.agent, "surface": a.surface, "kind": a.kind,
            "x": a.x, "y": a.line, "x2": a.x2, "y2": a.line2, "text": a.text,
            "description": describe_mark(msg.agent, a) if a.surface == "desktop" else ""}


def desktop_event(event: DesktopChanged) -> dict[str, Any]:
    """The desktop share's state as a ``desktop`` JSON event."""
    return {"event": "desktop", "state": event.state, "code": event.code or None,
            "error": event.error or None}


def call_event(event: CallChanged) -> dict[str, Any]:
    """The call's state as a ``call`` JSON event."""
    return {"event": "call", "state": event.state, "code": event.code or None,
            "hearing": event.hearing, "muted": event.muted, "error": event.error or None}


_EVENTS: dict[type[UserEvent], Callable[[Any], dict[str, Any]]] = {
    ChatLine: lambda e: {"event": "chat", "sender": e.sender, "text": e.text},
    GrantAsked: lambda e: {"event": "grant-asked", "scope": e.ask.scope,
                           "seconds": e.ask.seconds, "agent": e.ask.agent},
    CodeAsked: lambda e: {"event": "code-asked", "agent": e.ask.agent},
    Verification: lambda e: {"event": "verified", "method": e.method, "ok": e.ok,
                             "message": e.message},
    Marked: _annotation_event,
    Revoked: lambda e: {"event": "revoked", "grants": list(e.grants), "reason": e.reason},
    DesktopChanged: desktop_event,
    CallChanged: call_event,
}
"""Session events a wrapper may care about, as JSON events (a table, not an if-chain)."""


def session_event(event: UserEvent) -> dict[str, Any] | None:
    """A session event as a JSON event, or ``None`` if wrappers need not see it."""
    convert = _EVENTS.get(type(event))
    return None if convert is None else convert(event)


def emit(event: dict[str, Any]) -> None:
    """Print one JSON event line on stdout, stamped with the time."""
    print(json.dumps({**event, "at": round(time.time(), 3)}), flush=True)


def desktop_request(screen: bool, monitor: int | None, region: str | None,
                    codec: str | None, config: ClientConfig) -> DesktopRequest | None:
    """The desktop share asked for on the command line, or ``None`` without ``--screen``.

    Raises:
        ConfigError: for desktop options without ``--screen`` or bad values.
    """
    if not screen:
        given = [flag for flag, value in (("--monitor", monitor is not None),
                                          ("--region", region is not None),
                                          ("--codec", codec is not None)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)}: desktop options need --screen")
        return None
    if monitor is not None and monitor < 0:
        raise ConfigError("--monitor is 0 (all monitors) or the number of one (1, 2, ...)")
    return DesktopRequest(monitor=monitor or 0,
                          region=parse_region(region) if region is not None else None,
                          codec=parse_codec(codec, "--codec") if codec else config.codec)


def call_settings(config: ClientConfig, no_voice: bool, audio: str | None) -> ClientConfig:
    """``config`` with the call options of the command line applied.

    Raises:
        ConfigError: for an unknown sound system in ``--audio``.
    """
    changes: dict[str, Any] = {}
    if no_voice:
        changes["voice"] = False
    if audio is not None:
        changes["audio"] = parse_audio(audio, "--audio")
    return dataclasses.replace(config, **changes)


def describe(status: Status, now: float) -> Text:
    """One line telling the user where they stand."""
    if status.phase == "queued":
        waited = int(now - (status.queued_at or now))
        place = f"position {status.position}" if status.position else "in the queue"
        line = Text.assemble(("Waiting for an agent: ", "bold"), place,
                             f", waited {waited // 60}:{waited % 60:02d}",
                             ("  (Ctrl-C leaves the queue)", "dim"))
    elif status.phase == "offered":
        line = said(("Agent ", "bold"), (status.agent or "", "bold cyan"), " is joining...")
    elif status.phase == "connected":
        line = said(("Connected with ", "bold"), (status.agent or "", "bold cyan"),
                    (" verified by ", "dim"), status.broker, ("  (Ctrl-C ends the session)", "dim"))
    elif status.phase in ("connecting", "reconnecting"):
        line = Text(f"{status.phase.capitalize()} to the helpdesk...", style="yellow")
    else:
        line = said(status.message or status.phase)
    if status.message and status.phase not in ("ended", "left"):
        line.append_text(said(("\n" + status.message, "italic")))
    return line


@app.command("help", epilog=HELP_EPILOG)
def help_(
    topic: str | None = typer.Argument(None, help="What you need help with, in a few words."),
    no_tui: bool = typer.Option(False, "--no-tui", help="Plain status lines instead of the app."),
    cmd: str | None = typer.Option(None, "--cmd",
                                   help="Program to share instead of your $SHELL."),
    screen: bool = typer.Option(False, "--screen",
                                help="Share your desktop too (needs a graphical session)."),
    monitor: int | None = typer.Option(None, "--monitor", metavar="N",
                                       help="With --screen: only monitor N (0 = all)."),
    region: str | None = typer.Option(None, "--region", metavar="X,Y,W,H",
                                      help="With --screen: only this rectangle (pixels)."),
    codec: str | None = typer.Option(None, "--codec", metavar="vp8|h264",
                                     help="With --screen: video codec (default from "
                                          "client.toml, else vp8)."),
    no_voice: bool = typer.Option(False, "--no-voice",
                                  help="No call: do not hear or see the agent."),
    audio: str | None = AUDIO_OPTION,
    json_events: bool = typer.Option(False, "--json-events",
                                     help="One JSON event per line on stdout, for wrappers "
                                          "(implies --no-tui; see below)."),
    join: str | None = typer.Option(None, "--join", metavar="STRING",
                                    help="Join a helpdesk with the invite it sent you (a key "
                                         "is made for you if you have none)."),
    take_over: bool = typer.Option(False, "--take-over",
                                   help="If your key already waits for help from another "
                                        "terminal, move that request here without asking."),
    broker: str | None = BROKER_OPTION,
    key: Path | None = KEY_OPTION,
    yes: bool = YES_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Ask a helpdesk agent for help: join the queue and wait to be answered."""
    setup(verbose)
    if cmd and (no_tui or json_events):
        # Plain lines share no terminal (only chat, trust and the desktop): the program
        # would silently never run.
        raise ConfigError("--cmd shares a program in the app's terminal; --no-tui and "
                          "--json-events share none: leave one of them out")
    if join is not None:
        from assist.cli.invite import join_helpdesk

        config = join_helpdesk(join, key)
        broker, key = None, config.key  # the invite's broker, now the default one
    else:
        config = client_config(broker, key, "user")
    desktop = desktop_request(screen, monitor, region, codec, config)
    config = call_settings(config, no_voice, audio)
    if not topic:
        if not sys.stdin.isatty():
            raise ConfigError("say what you need help with: assist help 'vpn will not connect'")
        topic = input("What do you need help with? ").strip()
        if not topic:
            raise ConfigError("a topic is needed so the helpdesk can route you")
    if no_tui or json_events:
        asyncio.run(_plain(config, topic, yes, desktop, json_events, take_over))
        return
    from assist.tui import graphics
    from assist.tui.help_app import HelpApp

    config = call_settings(app_config(broker, key, yes, "user"), no_voice, audio)
    graphics.detect()  # asks the terminal, before the app owns it
    app_ = HelpApp(config, topic, shlex.split(cmd) if cmd else None, trust_prompt(yes),
                   desktop=desktop, take_over=take_over)
    app_.run()
    if app_.error:
        raise ConnectionFailed(app_.error)
    if app_.goodbye:
        out.print(app_.goodbye)
    elif app_.final is not None and app_.final.phase == "ended":
        out.print("Session ended. Thank you for contacting the helpdesk.")
    elif app_.final is not None and app_.final.phase == "taken-over":
        out.print(TAKEN_OVER)


TAKEN_OVER = "Another `assist help` with your key took this request over; this one stops."


def takeover_prompt(take_over: bool, interactive: bool) -> Callable[[str], Any]:
    """Answer "take over the request this key holds elsewhere?": the flag, or ask on a tty."""

    async def ask(question: str) -> bool:
        if take_over:
            return True
        if not interactive:
            return False
        prompt = f"You already asked for help elsewhere: {question}.\nMove it here? [y/N] "
        answer = await asyncio.get_running_loop().run_in_executor(None, input, prompt)
        return answer.strip().lower() in ("y", "yes")

    return ask



async def _plain(config: ClientConfig, topic: str, yes: bool,
                 desktop: DesktopRequest | None = None, json_events: bool = False,
                 take_over: bool = False) -> None:
    """``--no-tui`` and ``--json-events``: no shell shared, only the request, the
    chat and trust as lines, and the desktop share if asked for."""
    interactive = sys.stdout.isatty() and not json_events
    live = Live(Text(""), console=out, auto_refresh=False, transient=False) if interactive \
        else None
    last: list[str] = [""]
    shown: list[DesktopSender] = []
    """The desktop share of the last session: its line stays once the agent is gone."""

    def show(status: Status) -> None:
        if json_events:
            line = json.dumps(status_event(status))
            if line != last[0]:
                last[0] = line
                emit(status_event(status))
            return
        if session.desktop is not None:
            shown[:] = [session.desktop]
        text = describe(status, time.time())
        if lines is not None and status.phase == "connected":
            text.append(f"\n{KEYS}", style="dim")
        if session.call is not None:
            text.append_text(said("\n" + session.call.describe()))  # it may quote the agent
        if shown:
            text.append(f"\n{shown[0].describe()}")
        if live is not None:
            live.update(text, refresh=True)
        elif text.plain != last[0]:
            last[0] = text.plain
            print(text.plain, flush=True)

    def event(e: UserEvent) -> None:
        if isinstance(e, StatusChanged):
            show(e.status)
        elif json_events:
            converted = session_event(e)
            if converted is not None:
                emit(converted)
        elif isinstance(e, DesktopChanged | CallChanged):
            show(session.status)  # the status lines carry the desktop's and call's lines
        elif isinstance(e, ChatLine | Verification):
            tell(said((f"{e.sender}: ", "bold"), e.text) if isinstance(e, ChatLine)
                 else said(e.text))
        elif isinstance(e, GrantAsked | CodeAsked) and lines is not None:
            lines.asked(e)

    def tell(line: Text) -> None:
        if live is not None:
            live.console.print(line)  # above the status line
        else:
            print(line.plain, flush=True)

    typing = interactive and sys.stdin.isatty()
    session = UserSession(config, topic, event, trust=trust_prompt(yes), desktop=desktop,
                          takeover=takeover_prompt(take_over, typing))
    lines = LineMode(session, tell) if typing else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.ensure_future(session.run())
    stopper = asyncio.ensure_future(stop.wait())

    async def tick() -> None:
        while True:
            await asyncio.sleep(1)
            show(session.status)

    ticker = asyncio.ensure_future(tick())
    if live is not None:
        live.start()
    if lines is not None:
        lines.start()
    try:
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            final = runner.result()
        else:
            await session.leave()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            final = session.status
    except BaseException:
        await session.close()
        raise
    finally:
        ticker.cancel()
        stopper.cancel()
        if lines is not None:
            lines.stop()  # the survey below reads the terminal itself
        if live is not None:
            live.stop()
    if json_events:
        emit({"event": "end", "phase": final.phase, "resolved": final.resolved,
              "message": final.message})
    elif final.phase == "ended":
        out.print(f"Session ended ({'resolved' if final.resolved else 'not resolved'}). "
                  "Thank you for contacting the helpdesk.")
        if final.survey and sys.stdin.isatty():
            answer = input("How satisfied are you with the help? 1 (poor) to 5 (great), "
                           "Enter to skip: ").strip()
            if answer in ("1", "2", "3", "4", "5"):
                await session.survey(int(answer))
    elif final.phase == "left":
        out.print("You left the queue.")
    elif final.phase == "taken-over":
        out.print(TAKEN_OVER)
    await session.close()
