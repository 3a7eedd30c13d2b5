"""``assist console``: the agent's queue and wallboard, the live session, chat and end.

The app connects to the broker and routes events: the queue (pages, then
deltas, kept in a :class:`~assist.core.queueview.QueueMirror`) and the
wallboard go to the queue view; a session's terminal stream to its
:class:`~assist.client.share.TerminalViewer`; its desktop share signalling to
a :class:`~assist.client.desktop.DesktopReceiver` feeding the
:class:`~assist.tui.video.VideoView` (F4 switches between terminal and
desktop); every other event of the live session to its
:class:`~assist.client.agent_session.AgentSession`, whose changes
:class:`~assist.tui.console_session.SessionConsole` shows. The console
connects with :meth:`AgentClient.connect
<assist.client.agent.AgentClient.connect>`; when the connection drops it says
so and reconnects with backoff over the same path
(:meth:`~assist.client.agent.AgentClient.reconnect`); the broker gives a live
session back to its agent within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Input,
    Label,
    OptionList,
    RichLog,
    Static,
)
from textual.widgets.option_list import Option

from assist.client.agent import AgentClient
from assist.client.agent_session import AgentSession
from assist.client.connect import TrustPrompt
from assist.client.desktop import DesktopReceiver
from assist.client.helpflow import backoff
from assist.client.link import BrokerError
from assist.client.share import TerminalViewer
from assist.config import ClientConfig
from assist.core.queueview import QueueMirror
from assist.display import said
from assist.errors import AssistError, AuthRefused, HostKeyMismatch
from assist.protocol import messages as m
from assist.tui.console_session import SessionConsole, wait_text
from assist.tui.dialogs import ConfirmScreen, Dialog
from assist.tui.focus import focus_now
from assist.tui.graphics import Mode
from assist.tui.terminal import TerminalView
from assist.tui.video import VideoView
from assist.tui.wallboard import WallboardStrip

__all__ = ["ConsoleApp", "EndScreen"]

SHOWN = 200
"""Queue rows shown (agents take from the head; the status line counts them all)."""
STABLE = 30.0
"""Seconds a connection must have held for the next reconnect to start the backoff over."""


def key_line(bindings: list[BindingType]) -> str:
    """The shown keys of ``bindings`` in one line of text (``F2 chat  F3 term ...``)."""
    return "  ".join(f"{b.key.upper()} {b.description}" for b in bindings
                     if isinstance(b, Binding) and b.show)


class EndScreen(Dialog[tuple[str, bool] | None]):
    """Ask the root cause (free text or a past tag) and whether it was resolved."""

    DEFAULT_CSS = """
    EndScreen { align: center middle; }
    EndScreen > Vertical { width: 70; max-width: 100%; height: auto; max-height: 100%;
                           overflow-y: auto; border: round $accent;
                           background: $panel; padding: 1 2; }
    EndScreen OptionList { height: auto; max-height: 8; }
    EndScreen Label { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, tags: tuple[str, ...]) -> None:
        super().__init__()
        self.tags = tags

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("End session: what was the root cause?")
            yield Input(placeholder="root cause (e.g. expired vpn certificate)", id="cause")
            # Past root causes other agents typed: text, never markup.
            yield OptionList(*(Option(said(tag)) for tag in self.tags), id="tags")
            yield Checkbox("Resolved", value=True, id="resolved")
            yield Button("End session", variant="primary", id="end")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#cause", Input).value = str(event.option.prompt)

    def on_input_submitted(self) -> None:
        self._finish()

    def on_button_pressed(self) -> None:
        self._finish()

    def _finish(self) -> None:
        cause = self.query_one("#cause", Input).value.strip()
        if not cause:
            self.notify("Give a root cause: every contact is a defect to remove.",
                        severity="warning")
            return
        self.answer((cause, self.query_one("#resolved", Checkbox).value))

    def action_cancel(self) -> None:
        self.answer(None)



class ConsoleApp(SessionConsole):
    """The agent's console.

    Args:
        config: the client config (broker, key; ``media_hosts`` and ``snapshots``
            for desktop shares).
        trust: asked on first contact with an unpinned broker.
        audio: sound systems for the call (``None``: the config's, else all the
            media layer knows; tests pass ``()`` for silence).
        graphics: how a shared desktop is drawn (``None``: half-blocks; the CLI
            passes what the terminal takes, :func:`assist.tui.graphics.detect`).
    """

    TITLE = "assist console"
    CSS = """
    #queue-view { height: 1fr; }
    #session-view { display: none; height: 1fr; }
    .in-session #queue-view { display: none; }
    .in-session #session-view { display: block; }
    #screen-box { height: 1fr; border: round $accent; }
    #desktop-box { display: none; height: 1fr; border: round $accent; }
    .desktop #screen-box { display: none; }
    .desktop #desktop-box { display: block; }
    #side { width: 40; }
    #chat { height: 1fr; }
    #trust { height: auto; border: round $secondary; padding: 0 1; }
    #header { height: 1; background: $accent; color: $text; }
    #status { height: auto; }
    #keys { dock: bottom; height: auto; background: $panel; color: $text; padding: 0 1; }
    #banner { height: auto; color: $text-muted; padding: 0 1; }
    """
    # Short words: the footer shows every key even in 80 columns (F3 the user's terminal,
    # F4 their desktop, F6 verify their identity, F9 clear marks, F11 the side panel).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "toggle_status", "away"),
        Binding("f2", "chat", "chat", priority=True),
        Binding("f3", "screen", "term", priority=True),
        Binding("f4", "desktop", "desk", priority=True),
        Binding("f6", "verify", "id", priority=True),
        Binding("f7", "draw", "draw", priority=True),
        Binding("f8", "control", "type", priority=True),
        Binding("f9", "clear_marks", "clear", priority=True),
        Binding("f10", "end", "end", priority=True),
        Binding("f11", "side", "side", priority=True),
        Binding("f1", "hear", "hear", priority=True),
        Binding("f12", "mute", "mute", priority=True),
        Binding("ctrl+q", "quit", "quit", priority=True, show=False),  # said on top,
    ]
    SIDE_WIDTHS = (40, 28, 0)
    """What F11 cycles the side panel through (0: hidden, the screen takes the width)."""

    def __init__(self, config: ClientConfig, trust: TrustPrompt | None = None,
                 audio: tuple[str, ...] | None = None, banner: str = "",
                 graphics: Mode | None = None) -> None:
        super().__init__()
        self.graphics = graphics
        self.config = config
        self.banner = banner
        """A line kept in view under the queue (the demo's "be a user yourself")."""
        self.trust = trust
        self.audio = audio if audio is not None else config.audio
        self.status: m.AgentStatus = "away"
        self.queue = QueueMirror()
        self.connection = "connecting..."
        """How the link to the broker stands, when it is not simply up."""
        self.error: str | None = None
        self.agent_name = ""
        self.broker_name = ""
        self.away = ""

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="status")
        with Vertical(id="queue-view"):
            yield WallboardStrip(id="wallboard")
            yield DataTable(id="queue", cursor_type="row")
            if self.banner:
                yield Static(said(self.banner), id="banner")
        with Vertical(id="session-view"):
            yield Static("", id="header")
            with Horizontal():
                with ScrollableContainer(id="screen-box"):
                    yield TerminalView(TerminalViewer("-").emulator, read_only=True,
                                       id="screen")
                with Vertical(id="desktop-box"):
                    yield VideoView(snapshot_dir=self.config.snapshots, mode=self.graphics,
                                    id="desktop")
                with Vertical(id="side"):
                    yield Static("", id="trust")
                    yield RichLog(id="chat", wrap=True, markup=False, min_width=20)
                    yield Input(placeholder="message the user", id="say")
        # The keys as a line that wraps: every one stays readable in a narrow terminal.
        yield Static(said(key_line(self.BINDINGS)), id="keys")

    def on_mount(self) -> None:
        table = self.query_one("#queue", DataTable)
        table.add_columns("#", "user", "topic", "wait", "note")
        self.set_interval(1, self._tick)
        self._connect()

    @work(exclusive=True, group="link")
    async def _connect(self) -> None:
        attempt = 0
        while True:
            try:
                welcome = await self._open()
            except (HostKeyMismatch, AuthRefused) as exc:
                self.error = exc.message
                self.exit()
                return
            except AssistError as exc:
                if self.client is None:  # never connected: nothing to go back to
                    self.error = exc.message
                    self.exit()
                    return
                delay = backoff(attempt)
                attempt += 1
                self.connection = f"reconnecting ({exc.message}); next try in {delay:.1f} s"
                self._tick()
                await asyncio.sleep(delay)
                continue
            connected_at = time.monotonic()
            self.connection = ""
            if self.session is not None:
                self._rejoin(self.session)
            self.agent_name = welcome.name
            self.broker_name = welcome.broker
            self._tick()
            assert self.client is not None
            async for event in self.client.events():
                self._event(event)
            # A connection that held for a while starts the backoff again; one that
            # drops at once does not (else every console hits a restarting broker in
            # a tight loop, all at the same moment).
            if time.monotonic() - connected_at >= STABLE:
                attempt = 0
            delay = backoff(attempt)
            attempt += 1
            reason = self.client.close_reason or "the connection dropped"
            self.connection = (f"reconnecting: lost the connection to the broker ({reason}); "
                               f"next try in {delay:.1f} s")
            self.notify("Lost the connection to the broker; reconnecting. A live session "
                        "waits for you for a few seconds.", severity="warning")
            self._tick()
            await asyncio.sleep(delay)

    @work(group="rejoin")
    async def _rejoin(self, session: AgentSession) -> None:
        """Back after a reconnect while in a session: is it still ours?"""
        try:
            await session.resync()
        except AssistError as exc:
            # Only a definite "not yours" ends it here; a dropped link retries.
            if isinstance(exc, BrokerError) and exc.code == "not-found" \
                    and self.session is session:
                self.notify(f"Session {session.id} is no longer yours: {exc.message}",
                            severity="warning")
                self._leave_session()

    async def _open(self) -> m.Welcome:
        """Connect (or reconnect) and say hello; the queue arrives as pages after it."""
        self.queue = QueueMirror()
        if self.client is None:
            client = await AgentClient.connect(
                self.config, "assist console", trust=self.trust, host=self.config.hostname,
                os_user=self.config.os_user, fast=self._fast)
            assert client.welcome is not None
            welcome = client.welcome
        else:
            client = self.client
            welcome = await client.reconnect()
        assert client.config is not None
        self.config = client.config
        self.client = client
        if self.session is None:
            # A console comes up available; after a reconnect an idle agent says
            # again what it was (in a session the broker knows it is busy).
            first = self.agent_name == ""
            status: m.Availability = "away" if self.status == "away" and not first \
                else "available"
            try:
                await client.set_status(status)
                self.status = status
            except BrokerError as exc:
                if exc.code != "state":
                    raise
                # The broker gives us back a session of ours (this console restarted
                # within the grace): its Started follows.
                self.status = "busy"
        return welcome

    def _fast(self, msg: m.Msg) -> bool:
        # The user's terminal output goes to the view from the reader (no queue hop).
        if isinstance(msg, m.Output) and self.session is not None:
            self._event(msg)
            return True
        return False

    def _event(self, msg: m.Msg) -> None:
        if isinstance(msg, m.QueuePage | m.QueueDelta):
            changed = self.queue.apply(msg)
            if changed is None and self.client is not None:
                self.run_worker(self.client.queue_pages(), group="pages")
            elif changed and self.session is None:
                self._fill_queue()
        elif isinstance(msg, m.Wallboard):
            self.query_one(WallboardStrip).show(msg)
        elif isinstance(msg, m.Signal):
            if self.session is not None and msg.session == self.session.id:
                if msg.line == "call":
                    self._call_signal(msg)
                else:
                    self._desktop_signal(msg)
        elif self.session is not None and (change := self.session.handle(msg)) is not None:
            if change.ended:
                self._session_over(msg)
                return
            self.session_changed(msg, change)
            if change.presence:
                self._presence(msg)
        elif isinstance(msg, m.Started):
            self._start_session(msg.info)
        elif isinstance(msg, m.Chat):
            self.query_one("#chat", RichLog).write(said(f"{msg.sender}: {msg.text}"))
        elif isinstance(msg, m.Ended) and msg.message:
            self.notify(f"Session {msg.session}: {msg.message}.", severity="warning")

    def _session_over(self, msg: m.Msg) -> None:
        """The live session ended (by anyone) or its user left: say how, back to the queue."""
        assert self.session is not None
        gone = isinstance(msg, m.UserLost) or (isinstance(msg, m.Ended) and
                                               msg.reason != "agent")
        words = msg.message if isinstance(msg, m.Ended) and msg.message else \
            "the user left" if gone else "ended"
        self.notify(f"Session {self.session.id}: {words}.",
                    severity="warning" if gone else "information")
        self._leave_session()

    def _presence(self, msg: m.Msg) -> None:
        """The user's connection dropped or came back (the agent's own is in the status)."""
        assert self.session is not None
        until = self.session.away_until
        if until is not None:
            wait = max(0, round(until - time.time()))
            self.away = f"the user is reconnecting (up to {wait} s)"
            self.notify(f"{self.session.user}'s connection dropped; waiting up to {wait} s.",
                        severity="warning")
        else:
            self.away = ""
            self.notify(f"{self.session.user} is back.")
        self._tick()

    def _start_session(self, info: m.SessionInfo) -> None:
        assert self.client is not None
        self.session = AgentSession(self.client, info)
        view = self.query_one("#screen", TerminalView)
        view.set_emulator(self.session.viewer.emulator)
        view.set_notice(None)
        view.overlay.clear()
        self._set_mode(draw=False)
        self.query_one("#chat", RichLog).clear()
        self.add_class("in-session")
        self._show_trust()

    def _leave_session(self) -> None:
        self.away = ""
        self.session = None
        self._drop_desktop()
        self._drop_call()
        self._set_mode(draw=False)
        self.remove_class("in-session")
        self.status = "available"
        self.query_one("#queue", DataTable).focus()

    # -- the shared desktop --------------------------------------------------------------

    def _desktop_signal(self, msg: m.Signal) -> None:
        """Pass a desktop-share signal of the live session to its receiver."""
        assert self.client is not None and self.info is not None
        if self.desktop is None:
            if msg.kind != "offer":
                return  # a late bye or pause for a share we never saw
            video = self.query_one("#desktop", VideoView)
            # The receiver signals over the link itself: it outlives reconnects.
            self.desktop = DesktopReceiver(self.client.link, self.info,
                                           self.config.media_host_addresses,
                                           on_frame=video.update_frame,
                                           on_change=self._show_trust)
        if msg.kind == "offer":
            self.notify(f"{self.info.user} shares their desktop (F4 switches view). Compare "
                        "the verification code with them.")
            if not self.showing_desktop:
                self.action_desktop()
        self.run_worker(self.desktop.handle(msg), group="desktop")

    def _drop_desktop(self) -> None:
        desktop, self.desktop = self.desktop, None
        if desktop is not None:
            self.run_worker(desktop.stop(), group="desktop")
        self.query_one("#desktop", VideoView).clear()
        self.remove_class("desktop")

    def action_desktop(self) -> None:
        """Switch between the user's terminal and their shared desktop."""
        if self.info is None:
            return
        self.toggle_class("desktop")
        if self.showing_desktop:
            focus_now(self.query_one("#desktop", VideoView))
        else:
            focus_now(self.query_one("#screen", TerminalView))
        self._show_trust()

    def on_video_view_snapshot_saved(self, event: VideoView.SnapshotSaved) -> None:
        self.notify(f"Snapshot saved: {event.path}")

    def on_video_view_snapshot_failed(self, event: VideoView.SnapshotFailed) -> None:
        self.notify(event.message, severity="error")

    # -- the queue -----------------------------------------------------------------------

    def _fill_queue(self) -> None:
        table = self.query_one("#queue", DataTable)
        row = table.cursor_row
        table.clear()
        if not self.queue.ready:
            return
        offset = time.time() - self.queue.now
        for e in self.queue.entries()[:SHOWN]:
            notes = [n for n, on in (("back from dropped agent", e.requeued),
                                     ("reconnecting", not e.online),
                                     ("unregistered key", not e.registered)) if on]
            # User-supplied text is shown as text: a topic like "[/tmp] full" is no markup.
            table.add_row(str(e.position), said(e.user), said(e.topic),
                          wait_text(self.queue.now + offset - e.queued_at),
                          Text(", ".join(notes)), key=e.session)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _tick(self) -> None:
        if self.client is None:
            return
        self.expire_grants()
        if self.info is not None:
            self._show_trust()
            answered = self.info.answered_at or time.time()
            self.query_one("#header", Static).update(said(
                f" {self.info.user} · {self.info.topic} · {wait_text(time.time() - answered)}"
                f" · session {self.info.session}"))
        waiting = len(self.queue)
        shown = f" (first {SHOWN} shown)" if waiting > SHOWN else ""
        status = said(f"{self.agent_name} @ {self.broker_name} · {self.status} · "
                      f"{waiting} waiting{shown} · Enter accepts · Ctrl-Q quits")
        if self.connection:
            status = said((f"⚠ {self.connection}", "bold yellow"))
        elif self.away and self.info is not None:
            status.append(f" · {self.away}", style="yellow")
        self.query_one("#status", Static).update(status)
        if self.queue.ready and self.info is None:
            self._fill_queue()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if self.client is not None and self.info is None and event.row_key.value:
            self._accept(event.row_key.value)

    @work(exclusive=True, group="accept")
    async def _accept(self, session: str) -> None:
        assert self.client is not None
        try:
            await self.client.accept(session)
        except AssistError as exc:
            self.notify(exc.message, severity="error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "say" or self.session is None:
            return
        text = event.value.strip()
        event.input.value = ""
        if text:
            self.run_worker(self._try(self.session.chat(text)))

    def action_chat(self) -> None:
        if self.info is not None:
            focus_now(self.query_one("#say", Input))

    def action_screen(self) -> None:
        if self.info is not None:
            if self.showing_desktop:
                self.action_desktop()
            focus_now(self.query_one("#screen", TerminalView))

    def action_side(self) -> None:
        """Narrow the side panel, hide it, bring it back (F11 cycles)."""
        side = self.query_one("#side")
        width = side.styles.width.value if side.display and side.styles.width else 40
        widths = self.SIDE_WIDTHS
        following = widths[(widths.index(int(width)) + 1) % len(widths)] \
            if int(width) in widths and side.display else widths[0]
        side.display = following > 0
        if following:
            side.styles.width = following

    async def action_quit(self) -> None:
        """Quit; a user still being helped goes back to the front of the queue at once
        (asked first: quitting by mistake would drop them)."""
        self.run_worker(self._quit(), group="quit", exclusive=True)

    async def _quit(self) -> None:
        session = self.session
        if session is not None:
            sure = await self.push_screen_wait(ConfirmScreen(
                f"{session.user} is still being helped here. Quit anyway?",
                "They go back to the front of the queue for the next agent (another "
                "console of yours may take them).", "Quit", "Stay"))
            if not sure:
                return
            with contextlib.suppress(AssistError):
                await session.handoff("the agent closed the console")
        self.exit()

    @work(group="status")
    async def action_toggle_status(self) -> None:
        if self.client is None or self.info is not None:
            return
        new: m.Availability = "away" if self.status == "available" else "available"
        try:
            await self.client.set_status(new)
            self.status = new
        except AssistError as exc:
            self.notify(exc.message, severity="error")
        self._tick()

    @work(group="end")
    async def action_end(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            tags = await session.root_causes()
        except AssistError:
            tags = ()  # the pick list is a help, not a must: free text still works
        answer = await self.push_screen_wait(EndScreen(tags))
        if answer is None or self.session is not session:
            return
        cause, resolved = answer
        if await self._try(session.end(cause, resolved)):
            self._leave_session()
