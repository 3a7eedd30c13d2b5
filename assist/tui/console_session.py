"""The live-session half of the console: the user's screen, trust state, drawing.

:class:`SessionConsole` is the base of :class:`~assist.tui.console_app.ConsoleApp`
that shows one live session. What the agent knows of it and may do in it
(verification, the grants the user gave and took back, typing under a control
grant, marks under an annotate grant) is the session's
:class:`~assist.client.agent_session.AgentSession`; this half keeps only what
is the screen's own: the draw tool and pen, focus, dialogs, and the words for
each change. The app around it connects to the broker, shows the queue and
the wallboard, and passes the session's events to :meth:`SessionConsole.session_changed`.

The call of the session (the agent's voice and camera to the user, the
user's voice back under a ``mic`` grant) is an
:class:`~assist.client.call.AgentCall` that answers the user's offer; F12
mutes the agent, F1 asks the user for their microphone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.widgets import Static

from assist.client.agent import AgentClient
from assist.client.agent_session import MARK_TTL, AgentSession, Change
from assist.client.call import AgentCall
from assist.client.desktop import DesktopReceiver
from assist.config import ClientConfig
from assist.core.grants import explain
from assist.display import said
from assist.errors import AssistError
from assist.protocol import messages as m
from assist.tui.dialogs import DurationScreen, TextScreen, VerifyScreen, evidence_text
from assist.tui.focus import focus_now
from assist.tui.graphics import WORDS
from assist.tui.safe_app import SafeApp
from assist.tui.terminal import TerminalView
from assist.tui.video import Box, VideoView

TOOLS: dict[str, m.AnnotationKind] = {"b": "box", "h": "highlight", "a": "arrow", "l": "label"}
"""Draw-mode keys and the annotation kind each picks."""
PAUSED = "{user} paused sharing: you see nothing and cannot type until they resume"
"""Shown instead of the user's screen during a privacy pause."""
PEN_MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def wait_text(seconds: float) -> str:
    """``m:ss``."""
    total = max(0, int(seconds))
    return f"{total // 60}:{total % 60:02d}"


class SessionConsole(SafeApp[None]):
    """The agent's tools for one live session (the base of the console app).

    Subclasses set :attr:`client` once connected and :attr:`session` while a
    session is live; the widgets ``#screen`` (a :class:`TerminalView`),
    ``#desktop`` (a :class:`VideoView`) and ``#trust`` must exist.
    """

    config: ClientConfig
    audio: tuple[str, ...] | None

    def __init__(self) -> None:
        super().__init__()
        self.client: AgentClient | None = None
        self.session: AgentSession | None = None
        self.desktop: DesktopReceiver | None = None
        self.call: AgentCall | None = None
        self.tool: m.AnnotationKind = "box"
        self._pen_start: tuple[int, int] | None = None

    @property
    def info(self) -> m.SessionInfo | None:
        """The live session, if any."""
        return self.session.info if self.session is not None else None

    @property
    def grants(self) -> dict[m.Scope, m.GrantAnswer]:
        """The grants the user gave in the live session, by scope."""
        return self.session.grants if self.session is not None else {}

    @property
    def showing_desktop(self) -> bool:
        """The shared desktop is shown instead of the terminal."""
        return self.has_class("desktop")

    def _holds(self, scope: m.Scope) -> bool:
        return self.session is not None and self.session.holds(scope)

    async def _try(self, action: Awaitable[object]) -> bool:
        """Run an action on the session; False (and say why) if it failed."""
        try:
            await action
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return False
        return True

    # -- the session's events -------------------------------------------------------------

    def session_changed(self, msg: m.Msg, change: Change) -> None:
        """Show what one event of the live session changed (the session is updated)."""
        if change.screen:
            assert self.session is not None
            view = self.query_one("#screen", TerminalView)
            if view.emulator is not self.session.viewer.emulator:
                view.set_emulator(self.session.viewer.emulator)
            view.nudge()
        if change.resumed:
            self.notify("Reconnected: the session goes on.")
        notice = NOTICES.get(type(msg))
        if notice is not None:
            notice(self, msg, change)
        if change.cleared is not None:
            view = self.query_one("#screen", TerminalView)
            view.overlay.clear(change.cleared)
            view.refresh()
            self.query_one("#desktop", VideoView).clear_marks(change.cleared)
        if change.trust:
            self._show_trust()

    def _on_hidden(self, msg: m.Hidden, change: Change) -> None:
        assert self.session is not None
        view = self.query_one("#screen", TerminalView)
        was = view.notice is not None
        paused = self.session.paused
        view.set_notice(PAUSED.format(user=self.session.user) if paused else None)
        if paused and not was:
            self.notify(f"{self.session.user} paused sharing.", severity="warning")
        elif was and not paused:
            self.notify(f"{self.session.user} resumed sharing.")

    def _on_verified(self, msg: m.Verified, change: Change) -> None:
        if msg.ok:
            self.notify(f"Identity verified ({msg.method}). You may ask for control now.")
        else:
            self.notify(f"Verification failed: {msg.message}", severity="warning")

    def _on_grant(self, msg: m.GrantAnswer, change: Change) -> None:
        user = self.session.user if self.session else "the user"
        if change.declined:
            self.notify(f"{user} declined: {msg.scope}.", severity="warning")
        elif change.granted:  # not a grant restored after a reconnect: nothing new there
            self.notify(f"{user} allowed {msg.scope}.")
            if change.granted in ("control", "annotate"):
                self._set_mode(draw=change.granted == "annotate")

    def _on_revoke(self, msg: m.Revoke, change: Change) -> None:
        if change.lost:
            self.notify(f"The user revoked: {', '.join(change.lost)}.", severity="warning")
        self._set_mode(draw=False)

    def _on_refused(self, msg: m.KeysRefused, change: Change) -> None:
        self.notify(f"Keys refused: {explain(msg.reason)}.", severity="warning")
        if change.lost:
            self._set_mode(draw=False)

    def expire_grants(self) -> None:
        """Retire the grants that ran out, and say so (every tick)."""
        if self.session is None:
            return
        for scope in self.session.expire():
            self.notify(f"The {scope} permission ran out.")
            self._set_mode(draw=False)

    def _show_trust(self) -> None:
        session = self.session
        if session is None or session.info is None:
            return
        now = time.time()
        # Built as Text, never as markup: the evidence and the desktop's
        # description hold what the user's client said.
        lines = [evidence_text(session.info.evidence),
                 Text("verified", "bold green") if session.verified else
                 Text.assemble(("not verified", "bold yellow"), " (F6)")]
        for scope, g in session.grants.items():
            left = "" if g.expires_at is None else \
                f" {wait_text(g.expires_at - now)} left"
            lines.append(Text(f"may {scope}{left}"))
        view = self.query_one("#screen", TerminalView)
        if view.draw_mode:
            lines.append(Text.assemble(("drawing", "bold"), f": {self.tool} (b/h/a/l, "
                                                            "arrows+Enter, F7 stops)"))
        elif session.holds("control"):
            lines.append(Text.assemble(("typing", "bold"), " goes to the user's shell"))
        if session.paused:
            lines.append(Text.assemble(("[paused]", "bold red"), " the user paused sharing"))
        elif session.hidden:
            lines.append(Text.assemble(("[hidden input]", "bold red"),
                                       " the user types a secret"))
        if self.call is not None:
            lines.append(said(self.call.describe(session.holds("mic"))))
        if self.desktop is not None:
            mode = self.query_one("#desktop", VideoView).mode
            lines.append(said(self.desktop.describe() +
                              (f" · {WORDS[mode]}" if mode is not None else "")))
            if session.holds("annotate"):
                lines.append(Text("mark the desktop: drag (box) or click (point) on it"))
        self.query_one("#trust", Static).update(Text("\n").join(lines))

    def _set_mode(self, draw: bool) -> None:
        """Draw mode or typing mode on the user's screen."""
        view = self.query_one("#screen", TerminalView)
        view.draw_mode = draw and self._holds("annotate")
        view.pen = None
        view.read_only = view.draw_mode or not self._holds("control")
        self.query_one("#desktop", VideoView).mark_mode = self._holds("annotate")
        if self.session is not None and not self.showing_desktop and (
                view.draw_mode or not view.read_only):
            focus_now(view)
        self._show_trust()

    # -- the call -----------------------------------------------------------------------

    def _call_signal(self, msg: m.Signal) -> None:
        """Pass a call signal of the live session to the call (an offer makes one)."""
        assert self.client is not None and self.info is not None
        if self.call is None:
            if msg.kind != "offer":
                return  # a late bye of a call we never answered
            config = self.config
            self.call = AgentCall(self.client.link, self.info, config.media_host_addresses,
                                  camera=config.camera, audio=self.audio,
                                  voice_file=config.voice_file, on_change=self._show_trust)
        self.run_worker(self.call.handle(msg), group="call")

    def _drop_call(self) -> None:
        call, self.call = self.call, None
        if call is not None:
            self.run_worker(call.stop(), group="call")

    def action_mute(self) -> None:
        """Mute the agent's voice to the user, or unmute."""
        if self.call is not None:
            muted = self.call.toggle_mute()
            self.notify("Muted: the user does not hear you. F12 unmutes." if muted
                        else "The user hears you again.")

    @work(group="ask")
    async def action_hear(self) -> None:
        """Ask the user to let you hear their microphone."""
        session = self.session
        if session is None or self.call is None:
            return
        if session.holds("mic"):
            self.notify(f"You hear {session.user} already; they can stop it with F9.")
            return
        await self._ask(session, "mic", 0)

    # -- acting on the user's screen ------------------------------------------------------

    def on_terminal_view_input(self, event: TerminalView.Input) -> None:
        if self.session is not None and self.session.holds("control"):
            # What the agent types in the view goes under the control grant only.
            self.run_worker(self._try(self.session.type_keys(event.data, under=("control",))))

    @work(group="verify")
    async def action_verify(self) -> None:
        session = self.session
        if session is None or session.info is None:
            return
        answer = await self.push_screen_wait(VerifyScreen(session.user, session.info.evidence))
        if answer is None or self.session is not session:
            return
        method, note = answer
        if await self._try(session.verify(method, note)) and method == "totp":
            self.notify(f"Asked {session.user} for their authenticator code...")

    @work(group="ask")
    async def action_control(self) -> None:
        session = self.session
        if session is None:
            return
        if session.holds("control"):
            self._set_mode(draw=False)
            return
        try:
            session.may_ask("control")  # said now, not after the agent picked a duration
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return
        seconds = await self.push_screen_wait(DurationScreen(session.user))
        if seconds is None or self.session is not session:
            return
        await self._ask(session, "control", seconds)

    async def _ask(self, session: AgentSession, scope: m.Scope, seconds: float) -> None:
        if await self._try(session.ask(scope, seconds)):
            self.notify(f"Asked {session.user} for {scope}; waiting for their answer...")

    @work(group="ask")
    async def action_draw(self) -> None:
        if self.session is None:
            return
        if not self.session.holds("annotate"):
            await self._ask(self.session, "annotate", 0)
            return
        self._set_mode(draw=not self.query_one("#screen", TerminalView).draw_mode)

    def on_terminal_view_drawn(self, event: TerminalView.Drawn) -> None:
        self._mark(event.start, event.end)

    def on_key(self, event: object) -> None:
        view = self.query_one("#screen", TerminalView)
        key = getattr(event, "key", "")
        if key == "0" and view.read_only and view.has_focus and self.screen is view.screen:
            # Watching or drawing (not typing): 0 brings a big screen back to its corner.
            self.query_one("#screen-box").scroll_home(animate=False)
            getattr(event, "stop", lambda: None)()
            return
        # Keys meant for a dialog on top (e.g. the Enter that submits a label)
        # bubble up here too: they must not draw a second mark.
        if not view.draw_mode or not view.has_focus or self.screen is not view.screen:
            return
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

    async def _draw(self, session: AgentSession, kind: m.AnnotationKind,
                    start: tuple[int, int], end: tuple[int, int], text: str = "",
                    surface: m.Surface = "terminal") -> m.Annotation | None:
        """Mark the user's screen; the mark, or ``None`` (and why) if it failed."""
        try:
            return await session.annotate(kind, start, end, text, MARK_TTL, surface)
        except AssistError as exc:
            self.notify(exc.message, severity="error")
            return None

    @work(group="mark")
    async def _mark(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        session, tool = self.session, self.tool
        if session is None or not session.holds("annotate"):
            return
        text = ""
        if tool in ("arrow", "label"):
            asked: str | None = await self.push_screen_wait(
                TextScreen(f"Text of the {tool}:"))
            text = asked or ""
            if tool == "label" and not text:
                return
        mark = await self._draw(session, tool, start, end, text)
        if mark is not None:
            view = self.query_one("#screen", TerminalView)
            view.overlay.add(mark)
            view.refresh()

    def action_clear_marks(self) -> None:
        if self.session is None:
            return
        view = self.query_one("#screen", TerminalView)
        view.overlay.clear()
        view.refresh()
        self.query_one("#desktop", VideoView).clear_marks()
        self.run_worker(self._try(self.session.clear_marks()))

    def on_video_view_marked(self, event: VideoView.Marked) -> None:
        self._mark_desktop(event.start, event.end)

    @work(group="mark")
    async def _mark_desktop(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        """Mark the shared desktop: a box for a drag, a point for a click (desktop pixels)."""
        session = self.session
        if session is None or not session.holds("annotate"):
            return
        kind: m.AnnotationKind = "box" if start != end else "arrow"
        mark = await self._draw(session, kind, start, end, surface="desktop")
        if mark is not None:
            (x, y), (x2, y2) = start, end
            self.query_one("#desktop", VideoView).add_mark(
                mark.id, Box(min(x, x2), min(y, y2), abs(x2 - x), abs(y2 - y)), MARK_TTL)


NOTICES: dict[type[m.Msg], Callable[[SessionConsole, Any, Change], None]] = {
    m.Hidden: SessionConsole._on_hidden,
    m.Verified: SessionConsole._on_verified,
    m.GrantAnswer: SessionConsole._on_grant,
    m.Revoke: SessionConsole._on_revoke,
    m.KeysRefused: SessionConsole._on_refused,
}
"""What the console says (and which mode it takes) for the session's trust events."""
