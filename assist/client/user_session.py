"""The user's side of one request for help, headless: what every front end stands on.

:class:`UserSession` is the one owner of everything ``assist help`` runs for a
request: the :class:`~assist.client.helpflow.HelpRequest` (connection, queue,
reconnects), the user's shell in a :class:`~assist.share.pty.PtyProcess` and
its screen model, and while an agent is there the
:class:`~assist.client.share.TerminalShare`, the
:class:`~assist.client.guard.Guard`, the :class:`~assist.client.call.UserCall`
(the agent's voice and face; the user's microphone only under a ``mic``
grant) and the optional :class:`~assist.client.desktop.DesktopSender`. It routes the broker's events
to them, makes them when the session starts, has them announce themselves
again on a resumed connection, and stops them on one path when the agent is
gone. The help app, ``assist help --no-tui``, the demo's scripted user, the
session bench and the tests render its events
(:mod:`assist.client.user_events`) and hand the user's keys and decisions
back; none of them wires the parts.

The trust rules are the Guard's: it decides every keystroke and mark, F9
(:meth:`UserSession.revoke_all`) revokes locally before the broker hears, the
question itself stays with the front end, and an answer to a question of a
session that is over (ended, or the agent left and another came) is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from assist.client.call import FaceSink, UserCall
from assist.client.connect import TrustPrompt
from assist.client.desktop import DesktopRequest, DesktopSender
from assist.client.guard import Guard
from assist.client.helpflow import HelpRequest, Status, Takeover
from assist.client.share import TerminalShare, compile_redactions
from assist.client.user import UserClient
from assist.client.user_events import (
    AgentGone,
    AgentJoined,
    CallChanged,
    ChatLine,
    CodeAsked,
    DesktopChanged,
    GrantAsked,
    Marked,
    MarksCleared,
    Notice,
    PtyExited,
    Revoked,
    StatusChanged,
    Trust,
    TrustChanged,
    UserEvent,
    Verification,
)
from assist.config import ClientConfig
from assist.errors import ConnectionFailed
from assist.protocol import messages as m
from assist.share.emulator import Emulator
from assist.share.pty import PtyProcess

log = logging.getLogger(__name__)

POLL = 0.2
"""How often a live session looks at the pty's echo state (a password prompt may
sit silent) and at the desktop capture (it may die while sharing)."""


def _ignore(event: UserEvent) -> None:
    return None


class UserSession:
    """One request for help on the user's machine, from the queue to the end.

    Args:
        config: the client config (broker, key, redaction rules, media hosts).
        topic: what the user needs help with.
        on_event: called with every :data:`~assist.client.user_events.UserEvent`.
        command: the program to share in a pty (the user's shell); ``None``
            shares no terminal (``assist help --no-tui``).
        size: ``(cols, rows)`` of the user's terminal.
        env: environment added for ``command``.
        trust: asked on first contact with an unpinned broker.
        desktop: share the desktop too, once an agent is there.
        takeover: asked whether to take over a request this key holds elsewhere.
        on_output: sees every chunk the pty writes, before it is shown or sent
            (tests and the bench time and collect it).
    """

    def __init__(
        self,
        config: ClientConfig,
        topic: str,
        on_event: Callable[[UserEvent], None] = _ignore,
        *,
        command: Sequence[str] | None = None,
        size: tuple[int, int] = (80, 24),
        env: dict[str, str] | None = None,
        trust: TrustPrompt | None = None,
        desktop: DesktopRequest | None = None,
        takeover: Takeover | None = None,
        on_output: Callable[[bytes], None] | None = None,
    ) -> None:
        self.on_event = on_event
        self.command = list(command) if command else None
        self.env = env
        self.size = size
        self.desktop_request = desktop
        self.on_output = on_output
        self.emulator = Emulator(*size)
        """The user's own screen (their view draws it; the share snapshots it)."""
        self.redact = compile_redactions(config.redact)
        self.request = HelpRequest(config, topic, self._status, trust,
                                   on_started=self._started, size=size, on_event=self._route,
                                   on_resumed=self._resumed, takeover=takeover)
        self.pty: PtyProcess | None = None
        self.share: TerminalShare | None = None
        self.guard: Guard | None = None
        self.desktop: DesktopSender | None = None
        self.call: UserCall | None = None
        self.on_face: FaceSink | None = None
        """Where the agent's camera pictures go (the panel sets it)."""
        self.on_audio: Callable[[Any], object] | None = None
        """Sees every frame of the agent's voice (tests and benchmarks)."""
        self.final: Status | None = None
        """The status the request ended with, once :meth:`run` returned."""
        self.streaming = True
        """False keeps the shell's output on the user's screen only (the session
        bench times output unshared); ``share.snapshot()`` repairs the agent's view."""
        self._asks: list[m.AskGrant | m.AskCode] = []
        """Questions of the live session not answered yet (the only ones answerable)."""
        self._hidden = False
        self._desktop_paused = False
        """The privacy pause paused the desktop share (so resuming resumes it)."""
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stops: list[asyncio.Future[None]] = []
        self._leaving = False
        self._disconnected = False

    # -- what front ends read ------------------------------------------------------------

    @property
    def status(self) -> Status:
        """What the user should see now."""
        return self.request.status

    @property
    def in_session(self) -> bool:
        """True while an agent is with the user and the session's parts run."""
        return self.guard is not None

    @property
    def desktop_area(self) -> tuple[int, int, int, int] | None:
        """Where on the real screen the agent's desktop marks belong (``None``: not known)."""
        return self.desktop.area if self.desktop is not None else None

    def trust(self) -> Trust | None:
        """What the agent may do now; ``None`` without an agent."""
        guard = self.guard
        if guard is None:
            return None
        share = self.share
        return Trust(guard.summary(), guard.verified,
                     share is not None and share.hidden and not share.paused, guard.paused)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the shell (if there is one to share).

        Raises:
            ConfigError: if the program cannot be started.
        """
        if self.command is None or self.pty is not None:
            return
        pty = PtyProcess(self.command, *self.size, env=self.env, on_output=self._output,
                         on_exit=lambda status: self._emit(PtyExited(status)))
        pty.start()
        self.pty = pty

    async def run(self) -> Status:
        """Run the request until it is over; return the final status.

        The session's parts are stopped when it returns; the link stays open
        for the survey (:meth:`survey`, then :meth:`disconnect` or :meth:`close`).

        Raises:
            ConnectionFailed: if the broker cannot be used at all.
            BrokerError: ``already-waiting`` when this key waits elsewhere and
                the request was not taken over.
        """
        self.start()
        poller = asyncio.ensure_future(self._poll())
        try:
            final = await self.request.run()
        except ConnectionFailed:
            if not self._leaving:
                raise
            final = self.request.status  # the user let go: a closed link is theirs
        finally:
            poller.cancel()
        self.final = final
        await self._stop_live()
        return final

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            if self.share is not None and self.share.check_secret() != self._hidden:
                self._hidden = not self._hidden
                self._trust_changed()
            if self.desktop is not None and self.desktop.poll():
                self._spawn(self.desktop.stop())  # the capture died: stop, the panel says why

    # -- the user's terminal -------------------------------------------------------------

    def _output(self, data: bytes) -> None:
        if self.on_output is not None:
            self.on_output(data)
        if self.share is not None and self.streaming:
            self.share.output(data)
        else:
            self.emulator.receive(data)

    def write(self, data: bytes) -> None:
        """The user typed ``data`` into their shell."""
        if self.pty is not None:
            self.pty.write(data)

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal is now ``cols`` x ``rows``."""
        if (cols, rows) == self.size:
            return
        self.size = self.request.size = (cols, rows)
        if self.pty is not None:
            self.pty.resize(cols, rows)
        if self.share is not None:
            self.share.resize(cols, rows)
        else:
            self.emulator.resize(cols, rows)

    def _agent_keys(self, data: bytes) -> None:
        # Called by the Guard only for keystrokes it allowed.
        if self.pty is not None:
            self.pty.write(data, agent=True)

    # -- the privacy pause -----------------------------------------------------------

    @property
    def paused(self) -> bool:
        """The user paused sharing: the agent sees nothing and may not type."""
        return self.guard is not None and self.guard.paused

    def toggle_pause(self) -> bool:
        """Pause sharing at once, or resume it; return whether it is paused now.

        Paused, here first: the guard refuses every keystroke (those still
        queued for the shell are dropped), nothing of the terminal leaves, not
        even a picture (and so nothing is recorded), the desktop share pauses
        too, and the agent is told that the user paused. On resume the agent
        gets a picture in which what was printed meanwhile is blank.
        """
        guard = self.guard
        if guard is None:
            return False
        on = not guard.paused
        guard.paused = on
        if on:
            self._drop()
        if self.share is not None:
            self.share.pause(on)
        desktop = self.desktop
        if desktop is not None:
            if on and desktop.state == "live":
                self._desktop_paused = True
                self._spawn(desktop.toggle_pause())
            elif not on and self._desktop_paused and desktop.state == "paused":
                self._spawn(desktop.toggle_pause())
        if not on:
            self._desktop_paused = False
        self._trust_changed()  # the microphone closes too while paused
        return on

    def _secret(self) -> bool:
        return self.pty is not None and self.pty.secret_input()

    def _agent_room(self) -> int:
        return self.pty.agent_room() if self.pty is not None else 0

    def _drop(self) -> None:
        if self.pty is not None:
            self.pty.drop_agent_input()

    # -- the live session: its parts, made and stopped in one place ------------------

    async def _started(self, client: UserClient, info: m.SessionInfo) -> None:
        self._part()  # whatever an earlier agent left (nothing, normally)
        # The link, not its channel: it carries on over a new connection after a drop.
        link = client.link
        if self.pty is not None:
            self.share = TerminalShare(link, info.session, self.emulator, secret=self._secret,
                                       redact=self.redact)
        self.guard = Guard(link, info.session, self._agent_keys, self._secret, drop=self._drop,
                           room=self._agent_room, verified=info.verified, on_ask=self._ask,
                           on_annotation=self._annotation, on_change=self._trust_changed,
                           top=lambda: self.emulator.top)
        if self.pty is not None:
            self.pty.agent_may_type = self.guard.keys_allowed
        self._hidden = False
        config = self.request.config
        if config.voice:
            guard = self.guard
            call = UserCall(link, info, config.media_host_addresses,
                            mic_allowed=lambda: guard.allows("mic"), audio=config.audio,
                            voice_file=config.voice_file,
                            on_face=self._face if self.on_face is not None else None,
                            on_audio=self._audio)
            call.on_change = self._call_changed(call)
            self.call = call
            self._spawn(call.start())
        self._emit(AgentJoined(info))
        if self.desktop_request is not None:
            desktop = DesktopSender(link, info, self.desktop_request,
                                    self.request.config.media_host_addresses)
            desktop.on_change = self._desktop_changed(desktop)
            self.desktop = desktop
            self._spawn(self._share_desktop(desktop))

    def _resumed(self, info: m.SessionInfo) -> None:
        # The broker forgot our state with the old connection: say it again.
        if self.guard is not None:
            self.guard.reannounce()
        if self.share is not None:
            self.share.reannounce()

    def _status(self, status: Status) -> None:
        if not self.request.in_session:
            self._part()  # the agent is gone: every part of the session stops with them
        self._emit(StatusChanged(status))

    def _part(self) -> None:
        """Stop the live session's parts; each is stopped once, whichever way out."""
        desktop, self.desktop = self.desktop, None
        call, self.call = self.call, None
        # Capture and microphone stop first; this may run in a callback, so the stops
        # are tasks that :meth:`_stop_live` waits for.
        for part in (desktop, call):
            if part is not None:
                self._stops.append(asyncio.ensure_future(part.stop()))
        share, self.share = self.share, None
        guard, self.guard = self.guard, None
        if share is not None:
            share.stop()
        if guard is not None:
            guard.stop()  # every grant dies with the session
        self._asks.clear()
        self._desktop_paused = False
        if guard is not None or share is not None:
            self._emit(AgentGone())

    async def _stop_live(self) -> None:
        """Stop the live session's parts, the desktop capture first, and wait for it."""
        if self.desktop is not None:
            await self.desktop.stop()  # before anything else: never leave the screen shared
        if self.call is not None:
            await self.call.stop()
        self._part()
        while self._stops:
            await self._stops.pop()

    def _route(self, msg: m.Msg) -> None:
        """A broker event of the request, to the part it is for."""
        if isinstance(msg, m.Signal):
            part = self.call if msg.line == "call" else self.desktop
            if part is not None:
                self._spawn(part.handle(msg))
            return
        guard = self.guard
        if guard is not None and guard.handle(msg):
            if isinstance(msg, m.Verified):
                self._emit(Verification(msg.method, msg.ok, msg.message))
            return
        if self.share is not None and self.share.handle(msg):
            return
        if isinstance(msg, m.Chat) and guard is not None and msg.session == guard.session:
            self._emit(ChatLine(msg.sender, msg.text))

    # -- trust -------------------------------------------------------------------------

    def _ask(self, msg: m.Msg) -> None:
        # One open question of a kind at a time: asking again while the user has not
        # answered stacks no second dialog (the first one's answer is the answer).
        scope = getattr(msg, "scope", "")
        if any(type(asked) is type(msg) and getattr(asked, "scope", "") == scope
               for asked in self._asks):
            return
        if isinstance(msg, m.AskGrant):
            self._asks.append(msg)
            self._emit(GrantAsked(msg))
        elif isinstance(msg, m.AskCode):
            self._asks.append(msg)
            self._emit(CodeAsked(msg))

    def _open(self, ask: m.AskGrant | m.AskCode) -> Guard | None:
        """The guard to answer ``ask`` with, if it is an open question of this session."""
        for index, asked in enumerate(self._asks):
            if asked is ask:
                del self._asks[index]
                return self.guard
        return None  # asked of a session that is over, or answered already

    def answer(self, ask: m.AskGrant, allowed: bool, seconds: float | None = None) -> str:
        """The user's answer to ``ask``; return the new grant id ("" if refused or ignored).

        ``seconds`` overrides the duration asked for (0: until revoked). A
        question of a session that is over is ignored.
        """
        guard = self._open(ask)
        return "" if guard is None else guard.decide(ask, allowed, seconds)

    def code(self, ask: m.AskCode, text: str) -> None:
        """The authenticator code the user typed for ``ask`` (ignored if the session is over)."""
        guard = self._open(ask)
        if guard is not None:
            guard.code(text)

    def revoke_all(self) -> int:
        """Take back every permission, here first, then tell the broker; return how many."""
        guard = self.guard
        if guard is None:
            return 0
        live = tuple(g.id for g in guard.table.live(guard.clock()))
        count = guard.revoke_all()
        self._emit(MarksCleared())  # what the agent drew goes with the permissions
        self._emit(Revoked(live))
        return count

    def clear_marks(self) -> None:
        """The user clears the agent's marks (the agent is told)."""
        self._emit(MarksCleared())
        if self.guard is not None:
            self.guard.clear_annotations()

    def _annotation(self, msg: m.Msg) -> None:
        if isinstance(msg, m.Annotate):
            self._emit(Marked(msg))
        elif isinstance(msg, m.ClearAnnotations):
            self._emit(MarksCleared(msg.ids))

    def _trust_changed(self) -> None:
        if self.call is not None:
            self.call.permission_changed()  # a revoke or pause closes the microphone now
        trust = self.trust()
        if trust is not None:
            self._emit(TrustChanged(trust))

    # -- chat and the desktop --------------------------------------------------------------

    async def say(self, text: str) -> bool:
        """Send a chat line to the agent; ``False`` if there is none or the link is down."""
        guard = self.guard
        client = self.request.client
        if guard is None or client is None:
            return False
        try:
            await client.link.send(m.Chat(session=guard.session, text=text))
        except ConnectionFailed:
            return False  # reconnecting: the line is not sent, the session goes on
        return True

    async def _share_desktop(self, desktop: DesktopSender) -> None:
        # A failure is described by the sender; the terminal session goes on.
        if not await desktop.start() and desktop.state == "failed":
            self._emit(Notice(desktop.describe()))

    def _desktop_changed(self, desktop: DesktopSender) -> Callable[[], None]:
        def changed() -> None:
            self._emit(DesktopChanged(desktop.state, desktop.code, desktop.error,
                                      desktop.describe()))
        return changed

    # -- the call ------------------------------------------------------------------------

    def _call_changed(self, call: UserCall) -> Callable[[], None]:
        def changed() -> None:
            self._emit(CallChanged(call.state, call.code, call.hearing, call.muted,
                                   call.error, call.describe()))
        return changed

    def toggle_mute(self) -> bool:
        """Mute the call (the agent's voice and the user's microphone), or unmute."""
        return self.call.toggle_mute() if self.call is not None else False

    def _face(self, frame: Any) -> None:
        if self.on_face is not None:
            self.on_face(frame)

    def _audio(self, frame: Any) -> None:
        if self.on_audio is not None:
            self.on_audio(frame)

    def pause_desktop(self) -> None:
        """Pause the desktop share, or resume it."""
        if self.desktop is not None:
            self._spawn(self.desktop.toggle_pause())

    def stop_desktop(self) -> None:
        """Stop sharing the desktop now (the terminal stays shared)."""
        if self.desktop is not None:
            self._spawn(self.desktop.stop())

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the end ---------------------------------------------------------------------------

    async def survey(self, score: int) -> None:
        """Send the satisfaction answer (1-5) for the session that just ended."""
        await self.request.survey(score)

    async def disconnect(self) -> None:
        """Let go of the broker once the request is over (the shell goes on)."""
        self._leaving = True
        if not self._disconnected:
            self._disconnected = True
            await self.request.close()

    async def leave(self) -> None:
        """The user leaves: the desktop stops being captured first, then the queue is
        left or the session ended (unless the request is over already); then :meth:`close`."""
        self._leaving = True
        await self._stop_live()
        if self.final is None and not self._disconnected:
            await self.request.leave()
        await self.close()

    async def close(self) -> None:
        """The end of this request on this machine; every way out ends here.

        Stops the desktop capture first, then the terminal share and the
        grants, closes the link and hangs up the shell. Idempotent.
        """
        self._leaving = True
        await self._stop_live()
        for task in list(self._tasks):
            task.cancel()
        await self.disconnect()
        if self.pty is not None:
            self.pty.terminate()

    def _emit(self, event: UserEvent) -> None:
        self.on_event(event)

