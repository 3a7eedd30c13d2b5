"""``assist help``: the user's shell in an embedded terminal plus the agent panel.

With ``--screen`` the desktop is shared too, once the session starts: a
:class:`~assist.client.desktop.DesktopSender` runs in a worker (the shell never
waits for it), the panel shows the verification code to read aloud, which
audio device plays the agent's voice, and any failure as a message; F6
pauses or resumes the share and F7 stops it at once.

The agent's marks on the desktop are drawn on the user's real screen by a
:class:`~assist.share.overlay.DesktopOverlay` where X11 allows it, and are
described in words in the panel in every case.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.geometry import Offset
from textual.widgets import Button, Label

from assist.client.connect import TrustPrompt
from assist.client.desktop import DesktopRequest, DesktopSender, describe_mark
from assist.client.guard import Guard
from assist.client.helpflow import HelpRequest, Status
from assist.client.share import TerminalShare, compile_redactions
from assist.client.user import UserClient
from assist.config import ClientConfig
from assist.errors import AssistError
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.share.overlay import DesktopOverlay
from assist.share.pty import PtyProcess
from assist.tui.dialogs import CodeScreen, Dialog, GrantScreen, TakeoverScreen
from assist.tui.focus import focus_now
from assist.tui.panel import AgentPanel
from assist.tui.safe_app import SafeApp
from assist.tui.terminal import TerminalView

SECRET_POLL = 0.2
"""How often the pty's echo state is checked while sharing (password prompts)."""


class SurveyScreen(Dialog[int | None]):
    """One question after the session: how satisfied, 1 to 5."""

    DEFAULT_CSS = """
    SurveyScreen { align: center middle; }
    SurveyScreen > Vertical { width: 60; height: auto; border: round $accent;
                              background: $panel; padding: 1 2; }
    SurveyScreen Horizontal { height: auto; }
    SurveyScreen Button { min-width: 5; margin: 0 1; }
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
    """The user's side of a help session."""

    CSS = """
    Screen { layers: base overlay; }
    #term { layer: base; }
    """
    BINDINGS = [
        Binding("f2", "chat", "chat", priority=True),
        Binding("f3", "minimise", "hide panel", priority=True),
        Binding("f4", "move_panel", "move panel", priority=True),
        Binding("f6", "desktop_pause", "pause desktop", priority=True),
        Binding("f7", "desktop_stop", "stop desktop", priority=True),
        Binding("f8", "clear_marks", "clear marks", priority=True),
        Binding("f9", "revoke", "revoke all", priority=True),
        Binding("f10", "leave", "leave", priority=True),
    ]

    def __init__(self, config: ClientConfig, topic: str, command: Sequence[str] | None = None,
                 trust: TrustPrompt | None = None,
                 desktop: DesktopRequest | None = None, take_over: bool = False) -> None:
        super().__init__()
        self.take_over = take_over
        self.desktop_request = desktop
        self.desktop: DesktopSender | None = None
        self.desktop_marks: dict[str, tuple[str, float]] = {}
        """Desktop annotations in words, by id, with their expiry (monotonic)."""
        self.overlay: DesktopOverlay | None = None
        """The desktop marks on the real screen (made at the first mark of a session)."""
        self.config = config
        self.topic = topic
        self.command = list(command) if command else default_shell()
        self.trust = trust
        self.emulator = Emulator(80, 24)
        self.pty: PtyProcess | None = None
        self.share: TerminalShare | None = None
        self.guard: Guard | None = None
        self.redact = compile_redactions(config.redact)
        self.request: HelpRequest | None = None
        self.final: Status | None = None
        self.error: str | None = None
        self.farewell = ""
        self._corner = 0

    def compose(self) -> ComposeResult:
        yield TerminalView(self.emulator, id="term")
        yield AgentPanel(id="panel")

    def on_mount(self) -> None:
        cols, rows = self.size.width, self.size.height
        self.emulator.resize(cols, rows)
        self.pty = PtyProcess(self.command, cols, rows, on_output=self._pty_output,
                              on_exit=self._pty_exit)
        try:
            self.pty.start()
        except AssistError as exc:
            self.error = exc.message
            self.exit()
            return
        self.query_one(TerminalView).focus()
        self.call_after_refresh(self.action_move_panel)
        self.set_interval(1, self._tick)
        self.set_interval(SECRET_POLL, self._poll_secret)
        self._run_request()

    # -- the shell -------------------------------------------------------------------

    def _pty_output(self, data: bytes) -> None:
        if self.share is not None:
            self.share.output(data)
        else:
            self.emulator.receive(data)

    def _pty_exit(self, status: int) -> None:
        self.run_worker(self.action_leave(), exclusive=False)

    def on_terminal_view_input(self, event: TerminalView.Input) -> None:
        if self.pty is not None:
            self.pty.write(event.data)

    def on_resize(self) -> None:
        cols, rows = self.size.width, self.size.height
        if self.pty is not None and (cols, rows) != (self.pty.cols, self.pty.rows):
            self.pty.resize(cols, rows)
            if self.share is not None:
                self.share.resize(cols, rows)
            else:
                self.emulator.resize(cols, rows)

    # -- the request -----------------------------------------------------------------

    @work(exclusive=True, group="request")
    async def _run_request(self) -> None:
        self.request = HelpRequest(self.config, self.topic, self._status, self.trust,
                                   on_started=self._started, size=self.size,
                                   on_event=self._event, on_resumed=self._resumed,
                                   takeover=self._ask_takeover)
        try:
            self.final = await self.request.run()
        except AssistError as exc:
            self.error = exc.message
            self.exit()
            return
        if self.share is not None:
            self.share.stop()
            self.share = None
        if self.final.survey:
            self.push_screen(SurveyScreen(), self._rated)
        else:
            await self.request.close()

    def _rated(self, score: int | None) -> None:
        async def send() -> None:
            assert self.request is not None
            if score:
                await self.request.survey(score)
            await self.request.close()
            self.farewell = "Thank you! Your shell stays open; F10 closes assist."
            self._tick()

        self.run_worker(send())

    async def _ask_takeover(self, question: str) -> bool:
        if self.take_over:
            return True
        answer = await self.push_screen_wait(TakeoverScreen(question))
        return bool(answer)

    def _resumed(self, info: m.SessionInfo) -> None:
        # The broker forgot our state with the old connection: say it again.
        if self.guard is not None:
            self.guard.reannounce()
        if self.share is not None:
            self.share.reannounce()

    async def _started(self, client: UserClient, info: m.SessionInfo) -> None:
        assert self.pty is not None
        # The link, not its channel: it carries on over a new connection after a drop.
        link = client.link
        self.share = TerminalShare(link, info.session, self.emulator,
                                   secret=self.pty.secret_input, redact=self.redact)
        pty = self.pty
        self.guard = Guard(link, info.session, lambda data: pty.write(data, agent=True),
                           pty.secret_input, drop=pty.drop_agent_input, verified=info.verified,
                           on_ask=self._ask, on_annotation=self._annotation,
                           on_change=self._tick, top=lambda: self.emulator.top)
        self.panel.enable_chat(True)
        if self.desktop_request is not None:
            self.desktop = DesktopSender(client.link, info, self.desktop_request,
                                         self.config.media_host_addresses,
                                         on_change=self._tick)
            self._share_desktop(self.desktop)

    @work(group="desktop")
    async def _share_desktop(self, desktop: DesktopSender) -> None:
        # A failure is shown in the panel by the sender; the shell goes on.
        if not await desktop.start() and desktop.state == "failed":
            self.notify(desktop.describe(), severity="warning", timeout=10)

    def _event(self, msg: m.Msg) -> None:
        if isinstance(msg, m.Signal):
            if self.desktop is not None:
                self.run_worker(self.desktop.handle(msg), group="desktop")
            return
        if self.guard is not None and self.guard.handle(msg):
            return
        if self.share is not None and self.share.handle(msg):
            return
        if isinstance(msg, m.Chat):
            self.panel.chat_line(msg.sender, msg.text)

    def _poll_secret(self) -> None:
        if self.share is not None:
            self.share.check_secret()

    # -- trust -----------------------------------------------------------------------

    def _ask(self, msg: m.Msg) -> None:
        guard = self.guard
        if guard is None:
            return
        if isinstance(msg, m.AskGrant):
            def decided(allowed: bool | None) -> None:
                if guard is self.guard:
                    guard.decide(msg, bool(allowed))
            self.push_screen(GrantScreen(msg), decided)
        elif isinstance(msg, m.AskCode):
            def typed(code: str | None) -> None:
                if code and guard is self.guard:
                    guard.code(code)
            self.push_screen(CodeScreen(msg.agent), typed)

    def _annotation(self, msg: m.Msg) -> None:
        view = self.query_one(TerminalView)
        if isinstance(msg, m.Annotate) and msg.annotation.surface == "desktop":
            # Drawn on the real screen where X11 allows it, and said in words always.
            a = msg.annotation
            self.desktop_marks[a.id] = (describe_mark(msg.agent, a), time.monotonic() + a.ttl)
            self._show_on_desktop(a)
            self._tick()
        elif isinstance(msg, m.Annotate):
            view.overlay.add(msg.annotation)
        elif isinstance(msg, m.ClearAnnotations):
            view.overlay.clear(msg.ids)
            self._clear_desktop_marks(msg.ids)
        view.refresh()

    def _clear_desktop_marks(self, ids: tuple[str, ...] = ()) -> None:
        if not ids:
            self.desktop_marks.clear()
        for i in ids:
            self.desktop_marks.pop(i, None)
        if self.overlay is not None:
            if ids:
                self.overlay.remove(ids)
            else:
                self.overlay.clear()
        self._tick()

    def _show_on_desktop(self, a: m.Annotation) -> None:
        """Draw a desktop mark on the screen (a thread does the X11 work)."""
        if self.overlay is None:
            request = self.desktop_request
            self.overlay = DesktopOverlay(request.display if request else None)
        # The mark's pixels are the shared frame's: place them where it was captured.
        share = self.desktop.share if self.desktop is not None else None
        region = share.track.capture.region if share is not None else None
        area = None if region is None else (region.left, region.top, region.width,
                                            region.height)
        self.overlay.show(a, area)

    def _close_overlay(self) -> None:
        overlay, self.overlay = self.overlay, None
        if overlay is not None:
            overlay.close()

    def action_revoke(self) -> None:
        """Take back every permission at once (effective here before anyone is told)."""
        if self.guard is None:
            return
        count = self.guard.revoke_all()
        self.query_one(TerminalView).overlay.clear()
        self.query_one(TerminalView).refresh()
        self._clear_desktop_marks()
        self.notify(f"Revoked {count} permission{'s' if count != 1 else ''}: the agent "
                    "can only watch now." if count else "The agent has no permissions.")

    def action_clear_marks(self) -> None:
        view = self.query_one(TerminalView)
        view.overlay.clear()
        view.refresh()
        self._clear_desktop_marks()
        if self.guard is not None:
            self.guard.clear_annotations()

    @property
    def panel(self) -> AgentPanel:
        """The agent panel."""
        return self.query_one(AgentPanel)

    def _status(self, status: Status) -> None:
        panel = self.panel
        if status.phase == "connected":
            panel.set_title(f"{status.agent} · verified by {status.broker}")
            desktop = "F6 pause/resume desktop  F7 stop desktop\n" if self.desktop_request \
                else ""
            panel.set_keys(f"F9 revoke all  F8 clear marks  F2 chat\n{desktop}"
                           "F3 hide  F4 move  F10 end session")
        elif status.phase == "offered":
            panel.set_title(f"{status.agent} is joining...")
        elif status.phase in ("ended", "left", "taken-over"):
            panel.set_title("assist: session over")
            panel.enable_chat(False)
            panel.set_keys("F10 close assist")
        else:
            panel.set_title(f"assist · {status.broker or 'helpdesk'}")
            panel.set_keys("F2 chat  F3 hide  F4 move  F10 leave")
        in_session = self.request is not None and self.request.in_session
        if not in_session and self.share is not None:
            # The agent is gone (dropped, or the session ended): stop sending at once,
            # and every permission dies with the session.
            self.share.stop()
            self.share = None
            panel.enable_chat(False)
        if not in_session and self.guard is not None:
            self.guard.stop()
            self.guard = None
            # A question still open belongs to the session that just ended.
            while isinstance(self.screen, GrantScreen | CodeScreen):
                self.pop_screen()
            self.query_one(TerminalView).overlay.clear()
            self.desktop_marks.clear()
            self._close_overlay()
        if not in_session and self.desktop is not None:
            self.run_worker(self.desktop.stop(), group="desktop")
            self.desktop = None
        self._tick()

    def _tick(self) -> None:
        status = self.request.status if self.request else None
        if status is None:
            return
        if status.phase == "queued":
            waited = int(time.time() - (status.queued_at or time.time()))
            text = (f"Waiting for an agent: position {status.position}, "
                    f"{waited // 60}:{waited % 60:02d}\nYour shell works meanwhile.")
        elif status.phase == "connected":
            text = "The agent sees your terminal."
            if self.guard is not None:
                allowed = self.guard.summary()
                text += ("\nYour identity is verified." if self.guard.verified else "")
                text += f"\nThe agent may: {allowed}" if allowed else \
                    "\nThe agent can only watch."
            if self.share is not None and self.share.hidden:
                text += "\nSecret input: hidden from the agent."
            text += self._desktop_text()
        else:
            # After the survey the thanks stay (the clock must not wipe them).
            text = self.farewell or status.message or status.phase
        if status.message and status.phase not in ("ended", "left"):
            text += f"\n{status.message}"
        self.panel.set_status(text)

    def _desktop_text(self) -> str:
        """The desktop share and the agent's marks on it, as lines for the panel."""
        lines = []
        desktop = self.desktop
        if desktop is not None:
            if desktop.poll():  # the capture died while sharing: stop and say why
                self.run_worker(desktop.stop(), group="desktop")
            lines.append(desktop.describe())
        now = time.monotonic()
        for key, (_, until) in list(self.desktop_marks.items()):
            if until <= now:
                del self.desktop_marks[key]
        lines += [text for text, _ in self.desktop_marks.values()]
        return "".join(f"\n{line}" for line in lines)

    def on_agent_panel_said(self, event: AgentPanel.Said) -> None:
        if self.share is None or self.request is None or self.request.client is None:
            return
        client = self.request.client
        session = self.share.session
        self.run_worker(client.link.send(m.Chat(session=session, text=event.text)))

    # -- keys ------------------------------------------------------------------------

    def action_chat(self) -> None:
        panel = self.panel
        panel.remove_class("-min")
        panel.enable_chat(self.share is not None)
        if self.share is not None:
            focus_now(panel.query_one("#say"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without --screen F6 and F7 belong to the shell.
        if action in ("desktop_pause", "desktop_stop"):
            return self.desktop_request is not None
        return True

    def action_desktop_pause(self) -> None:
        """Pause the desktop share, or resume it."""
        if self.desktop is not None:
            self.run_worker(self.desktop.toggle_pause(), group="desktop")

    def action_desktop_stop(self) -> None:
        """Stop sharing the desktop now (the terminal stays shared)."""
        if self.desktop is not None:
            self.run_worker(self.desktop.stop(), group="desktop")

    def action_minimise(self) -> None:
        self.panel.toggle_class("-min")
        focus_now(self.query_one(TerminalView))

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

    def on_unmount(self) -> None:
        self._close_overlay()

    async def action_leave(self) -> None:
        self._close_overlay()
        if self.desktop is not None:
            # Stop capturing before anything else: leaving must never leave the screen shared.
            await self.desktop.stop()
        if self.request is not None and self.final is None:
            await self.request.leave()
            await self.request.close()
        if self.pty is not None:
            self.pty.terminate()
        self.exit()


