"""``assist help``: the user's shell in an embedded terminal plus the agent panel.

The session itself is a :class:`~assist.client.user_session.UserSession`: it
owns the shell, the request, the terminal share, the grants and the desktop
share. The app renders its events (the panel, the marks, the questions as
dialogs) and hands it the user's keys, resizes and answers; it holds no
session logic of its own.

Once an agent is there the call opens by itself: the user hears the agent
and sees their camera (or initials) in the panel, drawn in the best mode the
terminal takes; the agent hears the user only under a ``mic`` permission the
user gave (F9 takes it back with the rest); F12 mutes both ways. The panel
says which devices are used and the verification code of the call.

With ``--screen`` the desktop is shared too, once the session starts (the
shell never waits for it); the panel shows the verification code to read
aloud and any failure as a message; F6 pauses or resumes the share and F7
stops it at once.

The agent's marks on the desktop are drawn on the user's real screen by a
:class:`~assist.share.overlay.DesktopOverlay` where X11 allows it, and are
described in words in the panel in every case.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.geometry import Offset
from textual.widgets import Button, Label

from assist.client import user_events as ev
from assist.client.connect import TrustPrompt
from assist.client.desktop import DesktopRequest, DesktopSender, describe_mark
from assist.client.guard import Guard
from assist.client.helpflow import HelpRequest, Status
from assist.client.share import TerminalShare
from assist.client.user_session import UserSession
from assist.config import ClientConfig
from assist.errors import AssistError
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.share.overlay import DesktopOverlay
from assist.tui.dialogs import CodeScreen, Dialog, GrantScreen, takeover_screen
from assist.tui.focus import focus_now
from assist.tui.graphics import WORDS, Mode
from assist.tui.panel import AgentPanel
from assist.tui.safe_app import SafeApp
from assist.tui.terminal import TerminalView

PAUSED_TEXT = "Paused: the agent sees nothing and cannot type. F5 resumes."
"""What the panel says during a privacy pause."""


class SurveyScreen(Dialog[int | None]):
    """One question after the session: how satisfied, 1 to 5."""

    DEFAULT_CSS = """
    SurveyScreen { align: center middle; }
    SurveyScreen > Vertical { width: 60; max-width: 100%; height: auto; max-height: 100%;
                              overflow-y: auto; border: round $accent;
                              background: $panel; padding: 1 2; }
    SurveyScreen Horizontal { height: auto; }
    SurveyScreen Button { min-width: 5; margin: 0 1; }
    SurveyScreen Label { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(str(n), f"rate({n})", show=False) for n in range(1, 6)),
        Binding("escape", "rate(0)", "skip"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("The session has ended. How satisfied are you with the help?")
            yield Label("1 = poor ... 5 = great (press a number, Esc skips)")
            with Horizontal():
                for n in range(1, 6):
                    yield Button(str(n), id=f"rate-{n}")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer(int(str(event.button.label)))

    def action_rate(self, score: int) -> None:
        self.answer(score or None)


def default_shell() -> list[str]:
    """The user's login shell."""
    return [os.environ.get("SHELL") or "/bin/sh"]


class HelpApp(SafeApp[None], inherit_bindings=False):
    """The user's side of a help session: renders a :class:`UserSession`'s events."""

    CSS = """
    Screen { layers: base overlay; }
    #term { layer: base; }
    """
    BINDINGS = [
        Binding("f2", "chat", "chat", priority=True),
        Binding("f3", "minimise", "hide panel", priority=True),
        Binding("f4", "move_panel", "move panel", priority=True),
        Binding("f5", "privacy_pause", "pause/resume sharing", priority=True),
        Binding("f6", "desktop_pause", "pause desktop", priority=True),
        Binding("f7", "desktop_stop", "stop desktop", priority=True),
        Binding("f8", "clear_marks", "clear marks", priority=True),
        Binding("f9", "revoke", "revoke all", priority=True),
        Binding("f10", "leave", "leave", priority=True),
        Binding("f12", "mute", "mute", priority=True),
    ]

    SPEAKING = 0.2
    """Seconds between two looks at whether the agent speaks."""

    def __init__(self, config: ClientConfig, topic: str, command: Sequence[str] | None = None,
                 trust: TrustPrompt | None = None,
                 desktop: DesktopRequest | None = None, take_over: bool = False,
                 graphics: Mode | None = None) -> None:
        super().__init__()
        self.graphics = graphics
        self.take_over = take_over
        self.desktop_request = desktop
        self.desktop_marks: dict[str, tuple[str, float]] = {}
        """Desktop annotations in words, by id, with their expiry (monotonic)."""
        self.overlay: DesktopOverlay | None = None
        """The desktop marks on the real screen (made at the first mark of a session)."""
        self.session = UserSession(config, topic, self._on_session_event,
                                   command=list(command) if command else default_shell(),
                                   trust=trust, desktop=desktop, takeover=self._ask_takeover)
        self.final: Status | None = None
        self.goodbye = ""
        """What to say on the terminal once the app is gone (the user left)."""
        self.error: str | None = None
        self.farewell = ""
        self._corner = 0
        self._closing = False

    # What the session owns, for whoever looks (tests, the panel).

    @property
    def request(self) -> HelpRequest:
        """The request for help."""
        return self.session.request

    @property
    def emulator(self) -> Emulator:
        """The user's screen."""
        return self.session.emulator

    @property
    def share(self) -> TerminalShare | None:
        """The terminal share, while an agent is there."""
        return self.session.share

    @property
    def guard(self) -> Guard | None:
        """The grants of the live session."""
        return self.session.guard

    @property
    def desktop(self) -> DesktopSender | None:
        """The desktop share of the live session (``--screen``)."""
        return self.session.desktop

    def compose(self) -> ComposeResult:
        yield TerminalView(self.emulator, id="term", on_frame=self._dodge)
        yield AgentPanel(self.graphics, id="panel")

    def on_mount(self) -> None:
        self.session.resize(self.size.width, self.size.height)
        try:
            self.session.start()
        except AssistError as exc:
            self.error = exc.message
            self.exit()
            return
        self.query_one(TerminalView).focus()
        self.call_after_refresh(self.action_move_panel)
        self.session.on_face = self.panel.face.show
        self.set_interval(1, self._tick)
        self.set_interval(self.SPEAKING, self._speaking)
        self._run_request()

    # -- the shell -------------------------------------------------------------------

    def on_terminal_view_input(self, event: TerminalView.Input) -> None:
        self.session.write(event.data)

    def on_resize(self) -> None:
        self.session.resize(self.size.width, self.size.height)

    # -- the request -----------------------------------------------------------------

    @work(exclusive=True, group="request")
    async def _run_request(self) -> None:
        try:
            self.final = await self.session.run()
        except AssistError as exc:
            self.error = exc.message
            self.exit()
            return
        if self.final.survey:
            self.push_screen(SurveyScreen(), self._rated)
        else:
            await self.session.disconnect()

    def _rated(self, score: int | None) -> None:
        async def send() -> None:
            if score:
                await self.session.survey(score)
            await self.session.disconnect()
            self.farewell = "Thank you! Your shell stays open; F10 closes assist."
            self._tick()

        self.run_worker(send())

    async def _ask_takeover(self, question: str) -> bool:
        if self.take_over:
            return True
        answer = await self.push_screen_wait(takeover_screen(question))
        return bool(answer)

    # -- what the session says ---------------------------------------------------------

    def _on_session_event(self, event: ev.UserEvent) -> None:
        if self._closing:
            return  # the app is going: nothing left to draw on
        render = _RENDER.get(type(event))
        if render is not None:
            render(self, event)

    def _status(self, event: ev.StatusChanged) -> None:
        status = event.status
        panel = self.panel
        if status.phase == "connected":
            panel.set_title(f"{status.agent} · verified by {status.broker}")
            self._session_keys()
        elif status.phase == "offered":
            panel.set_title(f"{status.agent} is joining...")
        elif status.phase in ("ended", "left", "taken-over"):
            panel.set_title("assist: session over")
            panel.set_strip("F3 opens")
            panel.enable_chat(False)
            panel.set_keys("F10 close assist")
        else:
            panel.set_title(f"assist · {status.broker or 'helpdesk'}")
            panel.set_keys("F2 chat  F3 hide  F4 move  F10 leave")
        self._tick()

    def _session_keys(self) -> None:
        """The keys of a live session; the privacy pause comes first, always shown."""
        pause = "F5 resume sharing" if self.session.paused else "F5 pause sharing"
        desktop = "F6 pause/resume desktop  F7 stop desktop\n" if self.desktop_request \
            else ""
        mute = "  F12 mute" if self.session.call is not None else ""
        self.panel.set_keys(f"{pause}  F9 revoke all\nF8 clear marks  F2 chat  F3 hide\n"
                            f"{desktop}F4 move{mute}  F10 end session")
        self.panel.set_strip(f"F3 opens · {'F5 resume' if self.session.paused else 'F5 pause'}"
                             " · F9 revoke")

    def _joined(self, event: ev.AgentJoined) -> None:
        self.panel.enable_chat(True)
        if self.session.call is not None:
            self.panel.show_face(True, event.info.agent)

    def _gone(self, event: ev.AgentGone) -> None:
        self.panel.enable_chat(False)
        self.panel.show_face(False)
        self.panel.set_speaking(False)
        # A question still open belongs to the session that just ended.
        while isinstance(self.screen, GrantScreen | CodeScreen):
            self.pop_screen()
        view = self.query_one(TerminalView)
        view.overlay.clear()
        view.refresh()
        self.desktop_marks.clear()
        self._close_overlay()

    def _grant_asked(self, event: ev.GrantAsked) -> None:
        ask = event.ask

        def decided(allowed: bool | None) -> None:
            self.session.answer(ask, bool(allowed))

        self.push_screen(GrantScreen(ask), decided)

    def _code_asked(self, event: ev.CodeAsked) -> None:
        ask = event.ask

        def typed(code: str | None) -> None:
            if code:
                self.session.code(ask, code)

        self.push_screen(CodeScreen(ask.agent), typed)

    def _marked(self, event: ev.Marked) -> None:
        msg = event.mark
        view = self.query_one(TerminalView)
        if msg.annotation.surface == "desktop":
            # Drawn on the real screen where X11 allows it, and said in words always.
            a = msg.annotation
            self.desktop_marks[a.id] = (describe_mark(msg.agent, a), time.monotonic() + a.ttl)
            self._show_on_desktop(a)
            self._tick()
        else:
            view.overlay.add(msg.annotation)
        view.refresh()

    def _cleared(self, event: ev.MarksCleared) -> None:
        view = self.query_one(TerminalView)
        view.overlay.clear(event.ids)
        view.refresh()
        if not event.ids:
            self.desktop_marks.clear()
        for i in event.ids:
            self.desktop_marks.pop(i, None)
        if self.overlay is not None:
            if event.ids:
                self.overlay.remove(event.ids)
            else:
                self.overlay.clear()
        self._tick()

    def _pty_exited(self, event: ev.PtyExited) -> None:
        self.run_worker(self.action_leave(), exclusive=False)

    def _revoked(self, event: ev.Revoked) -> None:
        count = len(event.grants)
        self.notify(f"Revoked {count} permission{'s' if count != 1 else ''}: the agent "
                    "can only watch now." if count else "The agent has no permissions.")

    def _show_on_desktop(self, a: m.Annotation) -> None:
        """Draw a desktop mark on the screen (a thread does the X11 work)."""
        if self.overlay is None:
            request = self.desktop_request
            self.overlay = DesktopOverlay(request.display if request else None)
        # The mark's pixels are the shared frame's: place them where it was captured.
        self.overlay.show(a, self.session.desktop_area)

    def _close_overlay(self) -> None:
        overlay, self.overlay = self.overlay, None
        if overlay is not None:
            overlay.close()

    @property
    def panel(self) -> AgentPanel:
        """The agent panel."""
        return self.query_one(AgentPanel)

    def _tick(self, *_: object) -> None:
        status = self.session.status
        if status.phase == "queued":
            waited = int(time.time() - (status.queued_at or time.time()))
            text = (f"Waiting for an agent: position {status.position}, "
                    f"{waited // 60}:{waited % 60:02d}\nYour shell works meanwhile.")
        elif status.phase == "connected":
            text = "The agent sees your terminal."
            trust = self.session.trust()
            if trust is not None and trust.paused:
                text = PAUSED_TEXT
            elif trust is not None:
                text += ("\nYour identity is verified." if trust.verified else "")
                text += f"\nThe agent may: {trust.grants}" if trust.grants else \
                    "\nThe agent can only watch."
                if trust.hidden:
                    text += "\nSecret input: hidden from the agent."
            text += self._call_text() + self._desktop_text()
        else:
            # After the survey the thanks stay (the clock must not wipe them).
            text = self.farewell or status.message or status.phase
        if status.message and status.phase in ("queued", "connected"):
            text += f"\n{status.message}"  # other phases show their message alone
        self.panel.set_status(text)

    def _call_text(self) -> str:
        """The call and the face, as lines for the panel."""
        call = self.session.call
        if call is None:
            return ""
        face = self.panel.face
        picture = f"Face: {WORDS[face.mode]}"
        if call.faces:
            picture += f", {face.fps:.0f}/s"
        elif call.state == "live":
            picture += ", no camera (initials)"
        return f"\n{call.describe()}\n{picture}"

    def _speaking(self) -> None:
        call = self.session.call
        self.panel.set_speaking(call is not None and call.speaking)

    def _call_changed(self, event: ev.CallChanged) -> None:
        if event.state in ("ended", "failed"):
            self.panel.face.off()
        if self.session.in_session:
            self._session_keys()
        self._tick()

    def action_mute(self) -> None:
        """Mute the call both ways (the agent's voice and the microphone), or unmute."""
        if self.session.call is None:
            return
        muted = self.session.toggle_mute()
        self.notify("Muted: you hear nothing and the agent cannot hear you. F12 unmutes."
                    if muted else "Sound back on.")

    def _desktop_text(self) -> str:
        """The desktop share and the agent's marks on it, as lines for the panel."""
        lines = []
        if self.session.desktop is not None:
            lines.append(self.session.desktop.describe())
        now = time.monotonic()
        for key, (_, until) in list(self.desktop_marks.items()):
            if until <= now:
                del self.desktop_marks[key]
        lines += [text for text, _ in self.desktop_marks.values()]
        return "".join(f"\n{line}" for line in lines)

    def on_agent_panel_said(self, event: AgentPanel.Said) -> None:
        if self.session.in_session:
            self.run_worker(self.session.say(event.text))

    # -- keys ------------------------------------------------------------------------

    def action_chat(self) -> None:
        panel = self.panel
        panel.remove_class("-min")
        panel.enable_chat(self.session.in_session)
        if self.session.in_session:
            focus_now(panel.query_one("#say"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without --screen F6 and F7 belong to the shell.
        if action in ("desktop_pause", "desktop_stop"):
            return self.desktop_request is not None
        return True

    def action_revoke(self) -> None:
        """Take back every permission at once (effective here before anyone is told)."""
        self.session.revoke_all()

    def action_clear_marks(self) -> None:
        self.session.clear_marks()

    def action_privacy_pause(self) -> None:
        """Hide the screen from the agent at once (and refuse their keys), or resume."""
        if self.session.status.phase != "connected":
            return
        paused = self.session.toggle_pause()
        self._session_keys()
        self.notify(PAUSED_TEXT if paused else "Sharing resumed: the agent sees your "
                    "terminal again.")
        self._tick()

    def action_desktop_pause(self) -> None:
        """Pause the desktop share, or resume it."""
        self.session.pause_desktop()

    def action_desktop_stop(self) -> None:
        """Stop sharing the desktop now (the terminal stays shared)."""
        self.session.stop_desktop()

    def action_minimise(self) -> None:
        self.panel.fold()
        focus_now(self.query_one(TerminalView))

    def _dodge(self) -> None:
        """The shell's cursor went under the panel: the panel moves up or down."""
        panel = self.panel
        x, y, _ = self.emulator.cursor
        region = panel.region
        if not region.contains(x, y):
            return
        height = self.size.height
        below = region.y + region.height // 2 < height // 2  # it is in the top half
        panel.move_to(Offset(region.x, height - region.height if below else 0))

    def action_move_panel(self) -> None:
        panel = self.panel
        width, height = self.size.width, self.size.height
        w, h = panel.outer_size.width, panel.outer_size.height
        corners = [Offset(width - w, 0), Offset(width - w, height - h), Offset(0, height - h),
                   Offset(0, 0)]
        panel.move_to(corners[self._corner % 4])
        self._corner += 1

    def on_key(self, event: object) -> None:
        # Esc in the chat box returns to the shell.
        key = getattr(event, "key", "")
        if key == "escape" and self.focused is not None and self.focused.id == "say":
            focus_now(self.query_one(TerminalView))

    async def on_unmount(self) -> None:
        self._closing = True
        self._close_overlay()
        await self.session.close()

    async def action_leave(self) -> None:
        phase = self.session.status.phase
        if phase in ("connecting", "reconnecting", "queued", "offered"):
            self.goodbye = "You left the queue."
        elif phase == "connected":
            self.goodbye = "You ended the session."
        self._close_overlay()
        # The session stops the desktop capture before anything else, then leaves.
        await self.session.leave()
        self.exit()


_RENDER: dict[type[ev.UserEvent], Callable[[HelpApp, Any], None]] = {
    ev.StatusChanged: HelpApp._status,
    ev.AgentJoined: HelpApp._joined,
    ev.AgentGone: HelpApp._gone,
    ev.GrantAsked: HelpApp._grant_asked,
    ev.CodeAsked: HelpApp._code_asked,
    ev.Marked: HelpApp._marked,
    ev.MarksCleared: HelpApp._cleared,
    ev.Revoked: HelpApp._revoked,
    ev.ChatLine: lambda app, event: app.panel.chat_line(event.sender, event.text),
    ev.Verification: lambda app, event: app.notify(
        event.text, severity="information" if event.ok else "warning", timeout=10),
    ev.TrustChanged: HelpApp._tick,
    ev.DesktopChanged: HelpApp._tick,
    ev.CallChanged: HelpApp._call_changed,
    ev.Notice: lambda app, event: app.notify(event.text, severity="warning", timeout=10),
    ev.PtyExited: HelpApp._pty_exited,
}
"""How the app shows each session event (what is not here needs nothing drawn)."""
