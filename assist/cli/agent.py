"""``assist agent ...``: every console action as a command, for scripts (``--json``).

An agent may hold several connections: ``assist agent accept`` (or the
console) holds the session and streams its events; the other commands open
a short connection of the same agent, act on the session and exit::

    assist agent accept --json > events.jsonl &     # holds the session
    assist agent chat S "I will restart your VPN client"
    assist agent verify S key
    assist agent ask S control --seconds 300        # waits for the user's answer
    assist agent keys S "systemctl --user restart vpn" --enter
    assist agent end S --root-cause "vpn client hung"

``assist agent run RUNBOOK --session S`` runs a whole runbook (accepting the
session first if it is still in the queue).

Each command opens its connection with :meth:`AgentClient.connect`. The
one-shot actions name a session and leave the decision to the broker and the
user's machine (they fill in the newest grant and say why one no longer
works); ``accept`` and ``run`` follow the session they hold in an
:class:`~assist.client.agent_session.AgentSession`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import typer

from assist.cli.app import JSON_OPTION, VERBOSE_OPTION, app, out, print_json
from assist.cli.connect import BROKER_OPTION, KEY_OPTION, YES_OPTION, client_config, trust_prompt
from assist.cli.queue import format_wait
from assist.client import AgentClient
from assist.client.agent_session import AgentSession
from assist.client.link import BrokerError
from assist.client.runbook import RunbookRunner, Step, load_runbook
from assist.core.grants import explain
from assist.display import said
from assist.errors import AssistError, ConfigError, ConnectionFailed, StateError
from assist.log import setup
from assist.protocol import messages as m
from assist.protocol.vocabulary import (
    ANNOTATION_KINDS,
    AVAILABILITY,
    SCOPES,
    VERIFY_METHODS,
    one_of,
)

agent_app = typer.Typer(
    help="Console actions as commands for scripts: accept, chat, verify, ask, keys, "
         "annotate, end, run a runbook. Every command takes --json.",
    no_args_is_help=True)
app.add_typer(agent_app, name="agent")

T = TypeVar("T")
SESSION = typer.Argument(..., help="The session id (from `assist queue` or `accept`).")
WAIT_OPTION = typer.Option(120.0, "--timeout", help="Seconds to wait for the user's answer.")


def _connect(broker: str | None, key: Path | None, yes: bool, verbose: int,
             work: Callable[[AgentClient], Awaitable[T]]) -> T:
    """Open a connection as the agent, run ``work``, close."""
    setup(verbose)

    async def main() -> T:
        async with await AgentClient.connect(client_config(broker, key), "assist agent",
                                             watch=False, trust=trust_prompt(yes)) as client:
            return await work(client)

    return asyncio.run(main())


def _event_json(msg: m.Msg) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(msg)
    raw = getattr(msg, "data", None)
    if isinstance(raw, bytes):  # terminal bytes read better as text than as base64
        data["data"] = raw.decode("utf-8", "replace")
    data.pop("rid", None)
    return data


def _report(as_json: bool, data: dict[str, Any], human: str) -> None:
    if as_json:
        print_json(data)
    else:
        out.print(human)


@agent_app.command("status")
def status(
    state: str = typer.Argument(..., help="available or away"),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Become available for the queue, or away."""
    status = one_of(AVAILABILITY, state, "unknown status")
    _connect(broker, key, yes, verbose, lambda c: c.set_status(status))
    _report(as_json, {"status": status}, f"you are {status}")


@agent_app.command("accept")
def accept(
    session: str | None = typer.Argument(None, help="Session id; the head of the queue "
                                                   "if omitted."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Take a user and hold the session, printing its events until it ends.

    The session lasts as long as this command runs: Ctrl-C hands the user
    back to the front of the queue. Act on it from other commands. If the
    connection to the broker drops, a last ``{"t": "connection-lost"}``
    event is printed and the command exits non-zero (the broker keeps the
    session for the agent's grace period; `assist console` can take it back).
    """

    async def work(client: AgentClient) -> None:
        info = await client.accept(session)
        live = AgentSession(client, info)
        # Ctrl-C is ours before anyone hears the session started: a script that
        # interrupts as soon as it reads "started" still hands the user back.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        if as_json:
            print(json.dumps({"t": "started", **msgspec.to_builtins(info)}), flush=True)
        else:
            out.print(said("with ", (info.user, "bold"), f" ({info.topic}), session ",
                           (info.session, "bold"), "; Ctrl-C hands the user back to the queue"))
        events = asyncio.ensure_future(_print_events(client, live, as_json))
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({events, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stopper in done:
            events.cancel()
            with contextlib.suppress(AssistError):
                await live.handoff("the agent stopped `assist agent accept`")
            return
        if not events.result():
            reason = client.close_reason or "the connection dropped"
            if as_json:
                print(json.dumps({"t": "connection-lost", "session": info.session,
                                  "reason": reason}), flush=True)
            raise ConnectionFailed(f"lost the connection to the broker ({reason}) during "
                                   f"session {info.session}")

    _connect(broker, key, yes, verbose, work)


async def _print_events(client: AgentClient, live: AgentSession, as_json: bool) -> bool:
    """Print the session's events; True once it ended, False if the connection dropped."""
    begun = False
    async for event in client.events():
        if not begun:
            # What came before this session's start is from an earlier hold of it: a
            # notice kept while this agent was away ("requeued") is not this end.
            begun = isinstance(event, m.Started) and event.info.session == live.id
            if not begun:
                continue
        if await live.decline_media(event):
            continue  # no voice or camera here: the user is told at once
        change = live.handle(event)
        if getattr(event, "session", None) != live.id:
            continue
        if isinstance(event, m.Output | m.Snapshot):
            continue  # screen bytes: `assist console` shows the screen
        if as_json:
            print(json.dumps(_event_json(event)), flush=True)
        else:
            out.print(said(f"{type(event).__name__}: {_event_json(event)}"))
        if change is not None and change.ended:
            return True
    return False


@agent_app.command("chat")
def chat(
    session: str = SESSION, text: str = typer.Argument(..., help="The message."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Send a chat line to the user."""
    if not text.strip():
        raise ConfigError("the message is empty: give the text to send")
    if len(text) > m.MAX_TEXT:
        raise ConfigError(f"the message is {len(text)} characters long; at most "
                          f"{m.MAX_TEXT} go in one")

    async def work(client: AgentClient) -> None:
        sent = client.link.wait_for(lambda x: isinstance(x, m.Chat) and x.session == session, 5)
        waiter = asyncio.ensure_future(sent)
        await client.chat(session, text)
        try:
            await waiter  # the broker echoes it once the user has it
        except StateError:
            raise StateError(f"session {session} is not yours, or not live") from None

    _connect(broker, key, yes, verbose, work)
    _report(as_json, {"session": session, "sent": text}, "sent")


@agent_app.command("verify")
def verify(
    session: str = SESSION,
    method: str = typer.Argument(..., help="key (registered key), totp (the user types a "
                                           "code) or attest (with --note)"),
    note: str = typer.Option("", "--note", help="How you checked, for attest."),
    timeout: float = WAIT_OPTION,
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Verify the user's identity; waits for the outcome (exit 1 if it fails)."""
    how = one_of(VERIFY_METHODS, method, "unknown method")

    async def work(client: AgentClient) -> m.Verified:
        waiter = asyncio.ensure_future(client.link.wait_for(
            lambda x: isinstance(x, m.Verified) and x.session == session, timeout))
        try:
            await client.verify(session, how, note)
            result = await waiter
        finally:
            waiter.cancel()
        assert isinstance(result, m.Verified)
        return result

    result = _connect(broker, key, yes, verbose, work)
    if not result.ok:
        raise StateError(f"not verified: {result.message}")
    _report(as_json, {"session": session, "method": method, "verified": True},
            f"verified ({method})")


@agent_app.command("ask")
def ask(
    session: str = SESSION,
    scope: str = typer.Argument(..., help="annotate, control, run or mic (hear the user)"),
    seconds: float = typer.Option(0.0, "--seconds", help="How long (0: until revoked)."),
    timeout: float = WAIT_OPTION,
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Ask the user for a permission; waits for the answer (exit 1 if declined)."""
    asked = one_of(SCOPES, scope, "unknown permission")

    async def work(client: AgentClient) -> m.GrantAnswer:
        # The answer, or the end of the session: a user who left answers nothing.
        waiter = asyncio.ensure_future(client.link.wait_for(
            lambda msg: (isinstance(msg, m.GrantAnswer) and msg.session == session
                         and msg.scope == asked)
            or (isinstance(msg, m.Ended | m.UserLost) and msg.session == session), timeout))
        try:
            await client.ask_grant(session, asked, seconds)
            answer = await waiter
        finally:
            waiter.cancel()
        if not isinstance(answer, m.GrantAnswer):
            raise StateError(f"session {session} ended before the user answered")
        return answer

    answer = _connect(broker, key, yes, verbose, work)
    if not answer.allowed:
        raise StateError(f"the user declined {scope}")
    _report(as_json, {"session": session, "scope": scope, "grant": answer.grant,
                      "expires_at": answer.expires_at},
            f"allowed: {scope} (grant {answer.grant})")


@agent_app.command("keys")
def keys(
    session: str = SESSION,
    text: str = typer.Argument(..., help="What to type."),
    enter: bool = typer.Option(False, "--enter", help="Press Enter after the text."),
    grant: str = typer.Option(
        "", "--grant", help="Grant id (default: the newest control or run grant)."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Type into the user's terminal (needs their control or run grant)."""
    data = (text + ("\r" if enter else "")).encode()

    async def work(client: AgentClient) -> m.KeysRefused | None:
        waiter = asyncio.ensure_future(client.link.wait_for(
            lambda x: isinstance(x, m.KeysRefused) and x.session == session, 1.0))
        await client.send_keys(session, grant, data)
        try:
            refused = await waiter
        except StateError:
            return None  # nothing refused it within a second
        assert isinstance(refused, m.KeysRefused)
        return refused

    refused = _connect(broker, key, yes, verbose, work)
    if refused is not None:
        raise StateError(f"keys refused: {explain(refused.reason)}")
    _report(as_json, {"session": session, "typed": len(data)}, f"typed {len(data)} bytes")


@agent_app.command("annotate")
def annotate(
    session: str = SESSION,
    kind: str = typer.Option("box", "--kind", help="box, arrow, highlight or label"),
    x: int = typer.Option(..., "--x", help="Column of the first cell (0-based)."),
    row: int = typer.Option(..., "--row", help="Screen row of the first cell (0-based)."),
    x2: int | None = typer.Option(None, "--x2", help="Last column (default: --x)."),
    row2: int | None = typer.Option(None, "--row2", help="Last row (default: ROW)."),
    text: str = typer.Option("", "--text", help="A short label."),
    ttl: float = typer.Option(30.0, "--ttl", help="Seconds before it fades."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Draw on the user's screen (needs their annotate grant)."""
    shape = one_of(ANNOTATION_KINDS, kind, "unknown kind")
    mark = m.Annotation(id=f"cli-{x}-{row}-{kind}", kind=shape, x=x, line=row,
                        x2=x if x2 is None else x2, line2=row if row2 is None else row2,
                        text=text, ttl=ttl, relative=True)
    _connect(broker, key, yes, verbose, lambda c: c.annotate(session, "", mark))
    _report(as_json, {"session": session, "annotation": msgspec.to_builtins(mark)}, "drawn")


@agent_app.command("clear")
def clear(
    session: str = SESSION,
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Remove every annotation from the user's screen."""
    _connect(broker, key, yes, verbose, lambda c: c.clear_annotations(session))
    _report(as_json, {"session": session, "cleared": True}, "cleared")


@agent_app.command("end")
def end(
    session: str = SESSION,
    root_cause: str = typer.Option(..., "--root-cause", help="What caused the contact."),
    unresolved: bool = typer.Option(False, "--unresolved", help="The problem remains."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """End the session with its root cause; the user is asked the survey."""
    if not root_cause.strip():
        raise StateError("give a root cause: every contact is a defect to remove")
    _connect(broker, key, yes, verbose, lambda c: c.end(session, root_cause, not unresolved))
    _report(as_json, {"session": session, "root_cause": root_cause,
                      "resolved": not unresolved}, "ended")


@agent_app.command("handoff")
def handoff(
    session: str = SESSION,
    note: str = typer.Option(..., "--note", help="Why, for the next agent."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Hand the user back to the front of the queue for another agent."""
    _connect(broker, key, yes, verbose, lambda c: c.handoff(session, note))
    _report(as_json, {"session": session, "handed_off": True}, "handed off")


@agent_app.command("run")
def run(
    runbook: Path = typer.Argument(..., help="The runbook (YAML)."),
    session: str = typer.Option(..., "--session", help="A live session of yours, or one "
                                                       "waiting in the queue (accepted first)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds a step waits for the user."),
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Run a runbook in a session, each step announced to the user.

    Exit 1 if a step fails or the user revokes; the session stays live then
    (end it, or hand it off).
    """
    book = load_runbook(runbook)

    def show(index: int, step: Step) -> None:
        if as_json:
            print(json.dumps({"t": "step", "index": index, "kind": step.kind,
                              "what": step.describe()}), flush=True)
        else:
            out.print(said(f"step {index}/{len(book.steps)}: {step.describe()}"))

    async def work(client: AgentClient) -> dict[str, Any]:
        try:
            await client.resync(session)  # accepted only for a live session of ours
        except BrokerError:
            await client.accept(session)  # still waiting: take it
        result = await RunbookRunner(client, session, book, show, timeout).run()
        return result.__dict__

    result = _connect(broker, key, yes, verbose, work)
    if as_json:
        print(json.dumps({"t": "result", **result}), flush=True)
    elif result["ok"]:
        out.print(said((f"runbook {book.name} done", "green"), f" ({result['done']} steps)"))
    if not result["ok"]:
        raise RunFailed(f"runbook {book.name} stopped at {result['failed']}: "
                        f"{result['reason']}")


class RunFailed(AssistError):
    """A runbook did not finish."""

    code = "run-failed"


@agent_app.command("queue")
def queue_cmd(
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Who is waiting (the same as `assist queue`)."""
    listing = _connect(broker, key, yes, verbose, lambda c: c.queue())
    if as_json:
        print_json([msgspec.to_builtins(e) for e in listing.entries])
        return
    for e in listing.entries:
        out.print(said(f"{e.position:>3}  {e.session}  {e.user:<12} {e.topic}  "
                       f"{format_wait(listing.now - e.queued_at)}"))
    if not listing.entries:
        out.print("nobody is waiting")
