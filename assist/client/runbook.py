"""Runbooks: scripted help sessions, step by step, in plain sight of the user.

A runbook is a YAML file::

    name: restart the vpn client
    match: "(?i)vpn"            # topics a first-line bot takes (optional)
    steps:
      - say: "I will restart your VPN client; watch your terminal."
      - verify: key               # key | totp | attest (with note:)
      - ask: run                  # or {ask: control, seconds: 300}
      - type: "systemctl --user restart vpn\\r"
      - wait: {text: "active \\\\(running\\\\)", timeout: 20}
      - collect: {name: status, lines: 3}
      - annotate: {kind: box, x: 0, row: 0, x2: 30, text: "all good"}
      - end: {root_cause: "vpn client hung", resolved: true}

Every step is announced to the user in the chat before it runs, typing needs
a ``control`` or ``run`` grant the user gave (their machine checks it), and a
revoke by the user stops the run at once. A failed step stops the run with a
reason (a bot then hands the user to a human).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assist.client.agent import AgentClient
from assist.client.agent_session import AgentSession
from assist.errors import AssistError, ConfigError
from assist.protocol import messages as m
from assist.protocol.vocabulary import ANNOTATION_KINDS, SCOPES, VERIFY_METHODS, one_of

DEFAULT_TIMEOUT = 60.0
"""Seconds a step waits for the user (a grant answer, text on the screen)."""

STEP_KINDS = ("say", "verify", "ask", "type", "wait", "collect", "annotate", "sleep", "end")


class RunStopped(AssistError):
    """The run stopped before its end: a step failed, the user revoked or left."""

    code = "run-stopped"


@dataclass(frozen=True)
class Step:
    """One runbook step: its kind and its arguments."""

    kind: str
    args: dict[str, Any]

    def describe(self) -> str:
        """The step in a few words, as the user reads it in the chat."""
        values = {**self.args, "text": _visible(str(self.args.get("text", "")))}
        return _DESCRIBE[self.kind].format(**values)


_DESCRIBE = {
    "say": "message",
    "verify": "verify your identity ({method})",
    "ask": "ask permission: {scope}",
    "type": "type `{text}`",
    "wait": "wait for `{text}` on your screen",
    "collect": "read the last {lines} lines of your screen",
    "annotate": "mark your screen ({kind})",
    "sleep": "pause {seconds} s",
    "end": "end the session",
}


@dataclass(frozen=True)
class Runbook:
    """A named list of steps, optionally matching help topics (for bots)."""

    name: str
    steps: tuple[Step, ...]
    match: str = ""

    def matches(self, topic: str) -> bool:
        """True if a bot should take a user asking about ``topic``."""
        return bool(self.match) and re.search(self.match, topic) is not None


@dataclass
class RunResult:
    """What a run did."""

    runbook: str
    session: str
    ok: bool = False
    done: int = 0
    failed: str = ""
    reason: str = ""
    collected: dict[str, list[str]] = field(default_factory=dict)
    ended: bool = False


def _visible(text: str) -> str:
    return text.replace("\r", "⏎").replace("\n", "⏎").replace("\t", "⇥")


def _need(args: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = args.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: needs `{key}` ({kind.__name__})")
    return value


_NUMBERS = ("timeout", "seconds", "x2", "row2", "ttl", "lines")


def _numbers(args: dict[str, Any], where: str) -> None:
    for key in _NUMBERS:
        value = args.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value) or value < 0):
            raise ConfigError(f"{where}: `{key}` must be a number of 0 or more, "
                              f"not {value!r}")


def _step(raw: object, where: str) -> Step:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{where}: a step is one `kind: value` pair, e.g. `say: hello`")
    ((kind, value),) = raw.items()
    if kind not in STEP_KINDS:
        raise ConfigError(f"{where}: unknown step {kind!r}; use one of {', '.join(STEP_KINDS)}")
    args: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
    short = {"say": "text", "verify": "method", "ask": "scope", "type": "text",
             "wait": "text", "sleep": "seconds"}
    if not isinstance(value, dict) and kind in short:
        args[short[kind]] = value
    if kind in ("say", "type", "wait"):
        _need(args, "text", str, where)
        if kind == "wait":
            try:
                re.compile(args["text"])
            except re.error as exc:
                raise ConfigError(f"{where}: `{args['text']}` is not a valid pattern: {exc}") \
                    from None
    elif kind == "verify":
        args["method"] = one_of(VERIFY_METHODS, args.get("method"), "verify needs a method",
                                where)
        if args["method"] == "attest":
            _need(args, "note", str, where)
    elif kind == "ask":
        args["scope"] = one_of(SCOPES, args.get("scope"), "ask needs a scope", where)
        args.setdefault("seconds", 0)
    elif kind == "collect":
        args.setdefault("lines", 5)
        _need(args, "name", str, where)
        _need(args, "lines", int, where)
    elif kind == "annotate":
        args["kind"] = one_of(ANNOTATION_KINDS, args.get("kind", "box"), "annotate kind",
                              where)
        for key in ("x", "row"):
            _need(args, key, int, where)
    elif kind == "sleep":
        if not isinstance(args.get("seconds"), int | float):
            raise ConfigError(f"{where}: sleep needs seconds")
    elif kind == "end":
        args.setdefault("resolved", True)
        _need(args, "root_cause", str, where)
    _numbers(args, where)
    return Step(kind, args)


def parse_runbook(data: object, source: str) -> Runbook:
    """Validate a runbook read from YAML.

    Raises:
        ConfigError: naming the step and what is wrong with it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a runbook is a mapping with `name` and `steps`")
    name = data.get("name")
    steps = data.get("steps")
    if not isinstance(name, str) or not isinstance(steps, list) or not steps:
        raise ConfigError(f"{source}: a runbook needs a `name` and a non-empty `steps` list")
    match = data.get("match", "")
    if not isinstance(match, str):
        raise ConfigError(f"{source}: `match` is a regular expression over the topic")
    try:
        re.compile(match)
    except re.error as exc:
        raise ConfigError(f"{source}: `match` is not a valid pattern: {exc}") from None
    return Runbook(name, tuple(_step(s, f"{source} step {i}") for i, s in enumerate(steps, 1)),
                   match)


def read_yaml(path: Path) -> object:
    """Read a YAML file.

    Raises:
        ConfigError: if the file is missing or not valid YAML.
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: save it as UTF-8 (YAML)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None


def load_runbook(path: Path) -> Runbook:
    """Read and validate a runbook file."""
    return parse_runbook(read_yaml(path), str(path))


class RunbookRunner:
    """Run one runbook in one live session, as the agent.

    The runner reads the agent's events itself (screen, answers, revokes) into
    an :class:`~assist.client.agent_session.AgentSession`, so give it an
    :class:`AgentClient` whose events nobody else consumes.

    Args:
        agent: the agent's client, said hello.
        session: the live session (its id, or the agent's session object).
        runbook: what to do.
        on_step: told ``(index, step)`` before each step runs.
        timeout: default seconds a step waits for the user.
    """

    def __init__(self, agent: AgentClient, session: str | AgentSession, runbook: Runbook,
                 on_step: Callable[[int, Step], None] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.agent = agent
        self.live = session if isinstance(session, AgentSession) else \
            AgentSession.joining(agent, session, mark_prefix="rb")
        self.session = self.live.id
        self.runbook = runbook
        self.on_step = on_step or (lambda i, s: None)
        self.timeout = timeout
        self.result = RunResult(runbook.name, self.session)
        self._stop: asyncio.Future[str] | None = None
        self._ending = False

    async def run(self) -> RunResult:
        """Run every step; return the result (``ok`` False with a reason if stopped)."""
        self._stop = asyncio.get_running_loop().create_future()
        pump = asyncio.ensure_future(self._pump())
        try:
            try:
                # The session as it stands (verified? grants held?), then a snapshot.
                await self.live.resync()
                await self._within(lambda: self.live.info is not None, self.timeout,
                                   "the broker did not show the session")
            except AssistError as exc:
                self.result.failed, self.result.reason = "start", exc.message
                return self.result
            total = len(self.runbook.steps)
            for index, step in enumerate(self.runbook.steps, 1):
                self.on_step(index, step)
                try:
                    if step.kind != "say":
                        await self.live.chat(f"[{self.runbook.name}] step "
                                             f"{index}/{total}: {step.describe()}")
                    await self._guarded(self._do(step))
                except AssistError as exc:
                    self.result.failed = f"step {index} ({step.kind})"
                    self.result.reason = exc.message
                    return self.result
                self.result.done = index
            self.result.ok = True
            return self.result
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _guarded(self, work: Any) -> None:
        """Run a step, but stop the moment the user revokes or leaves."""
        assert self._stop is not None
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, self._stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, AssistError):
            await task
        raise RunStopped(self._stop.result())

    async def _pump(self) -> None:
        async for msg in self.agent.events():
            if await self.live.decline_media(msg):
                continue
            change = self.live.handle(msg)
            if change is None:
                continue
            if change.screen:
                self.live.viewer.emulator.feed(b"")  # `wait` reads the screen as it is
            if isinstance(msg, m.Revoke):
                self._halt("the user revoked the permissions")
            elif isinstance(msg, m.KeysRefused):
                self._halt(f"the user's machine refused the keys ({msg.reason})")
            elif change.ended:
                self.result.ended = True
                if not self._ending:  # our own `end` step is no reason to stop
                    self._halt("the session ended")
        self._halt("lost the connection to the broker")

    def _halt(self, why: str) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(why)

    async def _within(self, done: Callable[[], object], timeout: float, why: str) -> None:
        """Wait until ``done()`` holds after the session's events; stop the run if not soon."""
        try:
            async with asyncio.timeout(timeout):
                await self.live.until(done)
        except TimeoutError:
            raise RunStopped(why) from None

    async def _do(self, step: Step) -> None:
        a, live = step.args, self.live
        timeout = float(a.get("timeout", self.timeout))
        no_answer = f"the user did not answer within {timeout:g} s"
        if step.kind == "say":
            await live.chat(a["text"])
        elif step.kind == "verify":
            await live.verify(a["method"], a.get("note", ""))
            await self._within(lambda: live.verifying is None, timeout, no_answer)
            verified = live.verification
            if verified is None or not verified.ok:
                why = verified.message if verified is not None else "no outcome"
                raise RunStopped(f"identity not verified: {why}")
        elif step.kind == "ask":
            scope = a["scope"]
            await live.ask(scope, float(a["seconds"]))
            await self._within(lambda: scope not in live.pending, timeout, no_answer)
            answer = live.answers.get(scope)
            if answer is None or not answer.allowed:
                raise RunStopped(f"the user declined {scope}")
        elif step.kind == "type":
            # Scripted steps go under the user's `run` grant when there is one.
            await live.type_keys(a["text"].encode(), under=("run", "control"))
        elif step.kind == "wait":
            found = re.compile(a["text"])
            await self._within(lambda: found.search("\n".join(live.viewer.emulator.text())),
                               timeout, f"`{a['text']}` did not appear within {timeout:g} s")
        elif step.kind == "collect":
            lines = [line.rstrip() for line in live.viewer.emulator.text() if line.strip()]
            self.result.collected[a["name"]] = lines[-int(a["lines"]):]
        elif step.kind == "annotate":
            x, row = int(a["x"]), int(a["row"])
            end = (int(a.get("x2", x)), int(a.get("row2", row)))
            await live.annotate(a["kind"], (x, row), end, text=str(a.get("text", "")),
                                ttl=float(a.get("ttl", 30)), relative=True)
        elif step.kind == "sleep":
            await asyncio.sleep(float(a["seconds"]))
        elif step.kind == "end":
            self._ending = True
            await live.end(a["root_cause"], bool(a["resolved"]))
            self.result.ended = True
