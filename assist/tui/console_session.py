"""The live-session half of the console: the user's screen, trust state, drawing.

:class:`SessionConsole` is the base of :class:`~assist.tui.console_app.ConsoleApp`
that knows one live session: identity verification, the grants the user gave
(and took back), typing under a control grant, and marks drawn on the user's
terminal or shared desktop under an annotate grant. The app around it
connects to the broker, shows the queue and the wallboard, and routes the
session's events here (:data:`TRUST_EVENTS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from rich.markup import escape
from textual import work
from textual.widgets import Static

from assist.client.agent import AgentClient
from assist.client.desktop import DesktopReceiver
from assist.client.share import TerminalViewer
from assist.core.grants import EXPLAIN
from assist.errors import AssistError
from assist.protocol import messages as m
from assist.tui.dialogs import DurationScreen, TextScreen, VerifyScreen, evidence_text
from assist.tui.focus import focus_now
from assist.tui.safe_app import SafeApp
from assist.tui.terminal import TerminalView
from assist.tui.video import Box, VideoView

TOOLS = {"b": "box", "h": "highlight", "a": "arrow", "l": "label"}
"""Draw-mode keys and the annotation kind each picks."""
MARK_TTL = 30.0
PEN_MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def wait_text(seconds: float) -> str:
    """``m:ss``."""
    total = max(0, int(seconds))
    return f"{total // 60}:{total % 60:02d}"


class SessionConsole(SafeApp[None]):
    """The agent's tools for one live session (the base of the console app).

    Subclasses set :attr:`client` once connected and :attr:`info` while a
    session is live; the widgets ``#screen`` (a :class:`TerminalView`),
    ``#desktop`` (a :class:`VideoView`) and ``#trust`` must exist.
    """

    def __init__(self) -> None:
        super().__init__()
        self.client: AgentClient | None = None
        self.info: m.SessionInfo | None = None
        self.viewer: TerminalViewer | None = None
        self.desktop: DesktopReceiver | None = None
        self.verified = False
        self.grants: dict[str, m.GrantAnswer] = {}
        self.tool = "box"
        self._marks = 0
        self._pen_start: tuple[int, int] | None = None

    @property
    def showing_desktop(self) -> bool:
        """The shared desktop is shown instead of the terminal."""
        return self.has_class("desktop")

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
        if msg.restored:  # still held after a reconnect: nothing new to say
            self._show_trust()
            return
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
        self.query_one("#desktop", VideoView).clear_marks(msg.ids)

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
            lines.append("[b red]\\[hidden input][/] the user types a secret")
        if self.desktop is not None:
            lines.append(escape(self.desktop.describe()))
            if "annotate" in self.grants:
                lines.append("mark the desktop: drag (box) or click (point) on it")
        self.query_one("#trust", Static).update("\n".join(lines))

    def _set_mode(self, draw: bool) -> None:
        """Draw mode or typing mode on the user's screen."""
        view = self.query_one("#screen", TerminalView)
        view.draw_mode = draw and "annotate" in self.grants
        view.pen = None
        view.read_only = view.draw_mode or "control" not in self.grants
        self.query_one("#desktop", VideoView).mark_mode = "annotate" in self.grants
        if self.info is not None and not self.showing_desktop and (
                view.draw_mode or not view.read_only):
            focus_now(view)
        self._show_trust()

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
        # Keys meant for a dialog on top (e.g. the Enter that submits a label)
        # bubble up here too: they must not draw a second mark.
        if not view.draw_mode or not view.has_focus or self.screen is not view.screen:
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
        self.query_one("#desktop", VideoView).clear_marks()
        self.run_worker(self.client.clear_annotations(self.info.session))


    def on_video_view_marked(self, event: VideoView.Marked) -> None:
        self._mark_desktop(event.start, event.end)

    @work(group="mark")
    async def _mark_desktop(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        """Mark the shared desktop: a box for a drag, a point for a click (desktop pixels)."""
        grant = self.grants.get("annotate")
        if self.client is None or self.info is None or grant is None:
            return
        self._marks += 1
        (x, y), (x2, y2) = start, end
        kind: Literal["box", "arrow"] = "box" if start != end else "arrow"
        mark = m.Annotation(id=f"m{self._marks}", kind=kind, x=x, line=y, x2=x2, line2=y2,
                            ttl=MARK_TTL, surface="desktop")
        try:
            await self.client.annotate(self.info.session, grant.grant, mark)
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return
        left, top = min(x, x2), min(y, y2)
        self.query_one("#desktop", VideoView).add_mark(
            mark.id, Box(left, top, abs(x2 - x), abs(y2 - y)), MARK_TTL)


TRUST_EVENTS: dict[type[m.Msg], Callable[[SessionConsole, Any], None]] = {
    m.Verified: SessionConsole._on_verified,
    m.GrantAnswer: SessionConsole._on_grant,
    m.Revoke: SessionConsole._on_revoke,
    m.KeysRefused: SessionConsole._on_refused,
    m.ClearAnnotations: SessionConsole._on_clear,
}
"""Trust events of the live session and their handlers."""
