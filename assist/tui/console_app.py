"""``assist console``: the agent's queue, live view of the user's terminal, chat and end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    OptionList,
    RichLog,
    Static,
)

from assist.client.agent import AgentClient
from assist.client.connect import TrustPrompt, open_link
from assist.client.share import TerminalViewer
from assist.config import ClientConfig
from assist.core.grants import EXPLAIN
from assist.errors import AssistError
from assist.protocol import messages as m
from assist.tui.dialogs import DurationScreen, TextScreen, VerifyScreen, evidence_text
from assist.tui.terminal import TerminalView

TOOLS = {"b": "box", "h": "highlight", "a": "arrow", "l": "label"}
"""Draw-mode keys and the annotation kind each picks."""
MARK_TTL = 30.0
PEN_MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def wait_text(seconds: float) -> str:
    """``m:ss``."""
    total = max(0, int(seconds))
    return f"{total // 60}:{total % 60:02d}"


class EndScreen(ModalScreen[tuple[str, bool] | None]):
    """Ask the root cause (free text or a past tag) and whether it was resolved."""

    DEFAULT_CSS = """
    EndScreen { align: center middle; }
    EndScreen > Vertical { width: 70; height: auto; border: round $accent;
                           background: $panel; padding: 1 2; }
    EndScreen OptionList { height: 8; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, tags: tuple[str, ...]) -> None:
        super().__init__()
        self.tags = tags

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("End session: what was the root cause?")
            yield Input(placeholder="root cause (e.g. expired vpn certificate)", id="cause")
            yield OptionList(*self.tags, id="tags")
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
        self.dismiss((cause, self.query_one("#resolved", Checkbox).value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConsoleApp(App[None]):
    """The agent's console."""

    TITLE = "assist console"
    CSS = """
    #queue-view { height: 1fr; }
    #session-view { display: none; height: 1fr; }
    .in-session #queue-view { display: none; }
    .in-session #session-view { display: block; }
    #screen-box { height: 1fr; border: round $accent; }
    #side { width: 40; }
    #chat { height: 1fr; }
    #trust { height: auto; border: round $secondary; padding: 0 1; }
    #header { height: 1; background: $accent; color: $text; }
    #status { height: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "toggle_status", "available/away"),
        Binding("f2", "chat", "chat", priority=True),
        Binding("f3", "screen", "screen", priority=True),
        Binding("f6", "verify", "verify", priority=True),
        Binding("f7", "draw", "draw", priority=True),
        Binding("f8", "control", "control", priority=True),
        Binding("f9", "clear_marks", "clear marks", priority=True),
        Binding("f10", "end", "end session", priority=True),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(self, config: ClientConfig, trust: TrustPrompt | None = None) -> None:
        super().__init__()
        self.config = config
        self.trust = trust
        self.client: AgentClient | None = None
        self.status = "away"
        self.listing: m.QueueList | None = None
        self.info: m.SessionInfo | None = None
        self.viewer: TerminalViewer | None = None
        self.error: str | None = None
        self.verified = False
        self.grants: dict[str, m.GrantAnswer] = {}
        self.tool = "box"
        self._marks = 0

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="status")
        with Vertical(id="queue-view"):
            yield DataTable(id="queue", cursor_type="row")
        with Vertical(id="session-view"):
            yield Static("", id="header")
            with Horizontal():
                with ScrollableContainer(id="screen-box"):
                    yield TerminalView(TerminalViewer("-").emulator, read_only=True,
                                       id="screen")
                with Vertical(id="side"):
                    yield Static("", id="trust")
                    yield RichLog(id="chat", wrap=True, markup=False)
                    yield Input(placeholder="message the user", id="say")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#queue", DataTable)
        table.add_columns("#", "user", "topic", "wait", "note")
        self.set_interval(1, self._tick)
        self._connect()

    @work(exclusive=True, group="link")
    async def _connect(self) -> None:
        try:
            link, self.config = await open_link(self.config, "agent", self.trust)
            self.client = AgentClient(link)
            welcome = await self.client.hello(self.config.hostname, self.config.os_user,
                                              "assist console")
            await self.client.set_status("available")
        except AssistError as exc:
            self.error = exc.message
            self.exit()
            return
        self.status = "available"
        self.agent_name = welcome.name
        self.broker_name = welcome.broker
        self._tick()
        async for event in self.client.events():
            self._event(event)
        self.error = f"lost the connection to the broker ({link.close_reason})"
        self.exit()

    def _event(self, msg: m.Msg) -> None:
        if isinstance(msg, m.QueueList):
            self.listing = msg
            self._fill_queue()
        elif isinstance(msg, m.Started):
            self.info = msg.info
            self.verified = msg.info.verified
            self.grants.clear()
            self.viewer = TerminalViewer(msg.info.session, msg.info.cols, msg.info.rows)
            view = self.query_one("#screen", TerminalView)
            view.set_emulator(self.viewer.emulator)
            view.overlay.clear()
            self._set_mode(draw=False)
            self.query_one("#chat", RichLog).clear()
            self.add_class("in-session")
            self._show_trust()
        elif self.viewer is not None and self.viewer.handle(msg):
            view = self.query_one("#screen", TerminalView)
            if view.emulator is not self.viewer.emulator:
                view.set_emulator(self.viewer.emulator)
            view.nudge()
            if isinstance(msg, m.Hidden):
                self._show_trust()
        elif self.info is not None and getattr(msg, "session", None) == self.info.session \
                and type(msg) in _TRUST_EVENTS:
            _TRUST_EVENTS[type(msg)](self, msg)
        elif isinstance(msg, m.Chat):
            self.query_one("#chat", RichLog).write(f"{msg.sender}: {msg.text}")
        elif isinstance(msg, m.Ended | m.UserLost) and self.info is not None \
                and msg.session == self.info.session:
            gone = isinstance(msg, m.UserLost) or msg.reason != "agent"
            self.notify(f"Session {self.info.session} {'the user left' if gone else 'ended'}.")
            self._leave_session()

    # -- trust events ------------------------------------------------------------------

    def _on_verified(self, msg: m.Verified) -> None:
        if msg.ok:
            self.verified = True
            self.notify(f"Identity verified ({msg.method}). You may ask for control now.")
        else:
            self.notify(f"Verification failed: {msg.message}", severity="warning")
        self._show_trust()

    def _on_grant(self, msg: m.GrantAnswer) -> None:
        user = self.info.user if self.info else "the user"
        if not msg.allowed:
            self.notify(f"{user} declined: {msg.scope}.", severity="warning")
            return
        self.grants[msg.scope] = msg
        self.notify(f"{user} allowed {msg.scope}.")
        if msg.scope == "control":
            self._set_mode(draw=False)
        elif msg.scope == "annotate":
            self._set_mode(draw=True)
        self._show_trust()

    def _on_revoke(self, msg: m.Revoke) -> None:
        gone = [scope for scope, g in self.grants.items()
                if not msg.grants or g.grant in msg.grants]
        for scope in gone:
            del self.grants[scope]
        if gone:
            self.notify(f"The user revoked: {', '.join(gone)}.", severity="warning")
        self._set_mode(draw=False)
        self._show_trust()

    def _on_refused(self, msg: m.KeysRefused) -> None:
        reason = EXPLAIN.get(msg.reason, msg.reason)  # type: ignore[call-overload]
        self.notify(f"Keys refused: {reason}.", severity="warning")
        control = self.grants.get("control")
        if control is not None and control.grant == msg.grant and msg.reason in (
                "revoked", "expired", "no-grant"):
            del self.grants["control"]
            self._set_mode(draw=False)
            self._show_trust()

    def _on_clear(self, msg: m.ClearAnnotations) -> None:
        view = self.query_one("#screen", TerminalView)
        view.overlay.clear(msg.ids)
        view.refresh()

    def _show_trust(self) -> None:
        if self.info is None:
            return
        now = time.time()
        lines = [evidence_text(self.info.evidence),
                 "[b green]verified[/]" if self.verified else "[b yellow]not verified[/] (F6)"]
        for scope, g in self.grants.items():
            left = "" if g.expires_at is None else \
                f" {wait_text(g.expires_at - now)} left"
            lines.append(f"may {scope}{left}")
        view = self.query_one("#screen", TerminalView)
        if view.draw_mode:
            lines.append(f"[b]drawing[/]: {self.tool} (b/h/a/l, arrows+Enter, F7 stops)")
        elif "control" in self.grants:
            lines.append("[b]typing[/] goes to the user's shell")
        if self.viewer is not None and self.viewer.hidden:
            lines.append("[b red][hidden input][/] the user types a secret")
        self.query_one("#trust", Static).update("\n".join(lines))

    def _set_mode(self, draw: bool) -> None:
        """Draw mode or typing mode on the user's screen."""
        view = self.query_one("#screen", TerminalView)
        view.draw_mode = draw and "annotate" in self.grants
        view.pen = None
        view.read_only = view.draw_mode or "control" not in self.grants
        if self.info is not None and (view.draw_mode or not view.read_only):
            view.focus()
        self._show_trust()

    def _leave_session(self) -> None:
        self.info = None
        self.viewer = None
        self.grants.clear()
        self.verified = False
        self._set_mode(draw=False)
        self.remove_class("in-session")
        self.status = "available"
        self.query_one("#queue", DataTable).focus()

    def _fill_queue(self) -> None:
        table = self.query_one("#queue", DataTable)
        row = table.cursor_row
        table.clear()
        if self.listing is None:
            return
        offset = time.time() - self.listing.now
        for e in self.listing.entries:
            notes = [n for n, on in (("back from dropped agent", e.requeued),
                                     ("reconnecting", not e.online),
                                     ("unregistered key", not e.registered)) if on]
            table.add_row(str(e.position), e.user, e.topic,
                          wait_text(self.listing.now + offset - e.queued_at), ", ".join(notes),
                          key=e.session)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _tick(self) -> None:
        if self.client is None:
            return
        now = time.time()
        for scope, g in list(self.grants.items()):
            if g.expires_at is not None and g.expires_at <= now:
                del self.grants[scope]
                self.notify(f"The {scope} permission ran out.")
                self._set_mode(draw=False)
        if self.info is not None:
            self._show_trust()
            answered = self.info.answered_at or time.time()
            self.query_one("#header", Static).update(
                f" {self.info.user} · {self.info.topic} · {wait_text(time.time() - answered)}"
                f" · session {self.info.session}")
        waiting = len(self.listing.entries) if self.listing else 0
        self.query_one("#status", Static).update(
            f"{getattr(self, 'agent_name', '')} @ {getattr(self, 'broker_name', '')} · "
            f"{self.status} · {waiting} waiting · Enter accepts · F5 available/away")
        if self.listing is not None and self.info is None:
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
        if event.input.id != "say" or self.info is None or self.client is None:
            return
        text = event.value.strip()
        event.input.value = ""
        if text:
            self.run_worker(self.client.link.send(m.Chat(session=self.info.session, text=text)))

    def action_chat(self) -> None:
        if self.info is not None:
            self.query_one("#say", Input).focus()

    def action_screen(self) -> None:
        if self.info is not None:
            self.query_one("#screen", TerminalView).focus()

    # -- acting on the user's screen ------------------------------------------------------

    def on_terminal_view_input(self, event: TerminalView.Input) -> None:
        control = self.grants.get("control")
        if self.client is None or self.info is None or control is None:
            return
        self.run_worker(self.client.send_keys(self.info.session, control.grant, event.data))

    @work(group="verify")
    async def action_verify(self) -> None:
        if self.client is None or self.info is None:
            return
        info = self.info
        answer = await self.push_screen_wait(VerifyScreen(info.user, info.evidence))
        if answer is None or self.info is not info:
            return
        method, note = answer
        try:
            await self.client.verify(info.session, method, note)
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return
        if method == "totp":
            self.notify(f"Asked {info.user} for their authenticator code...")

    @work(group="ask")
    async def action_control(self) -> None:
        if self.client is None or self.info is None:
            return
        info = self.info
        if "control" in self.grants:
            self._set_mode(draw=False)
            return
        seconds = await self.push_screen_wait(DurationScreen(info.user))
        if seconds is None or self.info is not info:
            return
        await self._ask(info, "control", seconds)

    async def _ask(self, info: m.SessionInfo, scope: str, seconds: float) -> None:
        assert self.client is not None
        try:
            await self.client.ask_grant(info.session, scope, seconds)
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return
        self.notify(f"Asked {info.user} for {scope}; waiting for their answer...")

    @work(group="ask")
    async def action_draw(self) -> None:
        if self.client is None or self.info is None:
            return
        view = self.query_one("#screen", TerminalView)
        if "annotate" not in self.grants:
            await self._ask(self.info, "annotate", 0)
            return
        self._set_mode(draw=not view.draw_mode)

    def on_terminal_view_drawn(self, event: TerminalView.Drawn) -> None:
        self._mark(event.start, event.end)

    def on_key(self, event: object) -> None:
        view = self.query_one("#screen", TerminalView)
        if not view.draw_mode or not view.has_focus:
            return
        key = getattr(event, "key", "")
        cols, rows = view.emulator.size
        top = view.emulator.top
        if key in TOOLS:
            self.tool = TOOLS[key]
            self._show_trust()
        elif key in PEN_MOVES:
            x, line = view.pen or (0, top)
            dx, dy = PEN_MOVES[key]
            view.pen = (max(0, min(cols - 1, x + dx)), max(top, min(top + rows - 1, line + dy)))
            view.refresh()
        elif key in ("enter", "space") and view.pen is not None:
            if self._pen_start is None or self.tool in ("arrow", "label"):
                self._pen_start = view.pen
                if self.tool not in ("arrow", "label"):
                    return
            start, self._pen_start = self._pen_start, None
            self._mark(start, view.pen)
        elif key == "escape":
            self._set_mode(draw=False)
        else:
            return
        getattr(event, "stop", lambda: None)()

    _pen_start: tuple[int, int] | None = None

    @work(group="mark")
    async def _mark(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        grant = self.grants.get("annotate")
        if self.client is None or self.info is None or grant is None:
            return
        info = self.info
        text = ""
        if self.tool in ("arrow", "label"):
            asked: str | None = await self.push_screen_wait(
                TextScreen(f"Text of the {self.tool}:"))
            text = asked or ""
            if self.tool == "label" and not text:
                return
        self._marks += 1
        mark = m.Annotation(id=f"m{self._marks}", kind=self.tool,  # type: ignore[arg-type]
                            x=start[0], line=start[1], x2=end[0], line2=end[1], text=text,
                            ttl=MARK_TTL)
        try:
            await self.client.annotate(info.session, grant.grant, mark)
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return
        view = self.query_one("#screen", TerminalView)
        view.overlay.add(mark)
        view.refresh()

    def action_clear_marks(self) -> None:
        if self.client is None or self.info is None:
            return
        view = self.query_one("#screen", TerminalView)
        view.overlay.clear()
        view.refresh()
        self.run_worker(self.client.clear_annotations(self.info.session))

    @work(group="status")
    async def action_toggle_status(self) -> None:
        if self.client is None or self.info is not None:
            return
        new = "away" if self.status == "available" else "available"
        try:
            await self.client.set_status(new)
            self.status = new
        except AssistError as exc:
            self.notify(exc.message, severity="error")
        self._tick()

    @work(group="end")
    async def action_end(self) -> None:
        if self.client is None or self.info is None:
            return
        tags = (await self.client.link.request(m.ListRootCauses(), m.RootCauses)).tags
        answer = await self.push_screen_wait(EndScreen(tags))
        if answer is None or self.info is None:
            return
        cause, resolved = answer
        try:
            await self.client.end(self.info.session, cause, resolved)
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return
        self._leave_session()


_TRUST_EVENTS: dict[type[m.Msg], Callable[[ConsoleApp, Any], None]] = {
    m.Verified: ConsoleApp._on_verified,
    m.GrantAnswer: ConsoleApp._on_grant,
    m.Revoke: ConsoleApp._on_revoke,
    m.KeysRefused: ConsoleApp._on_refused,
    m.ClearAnnotations: ConsoleApp._on_clear,
}
