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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assist.client.agent import AgentClient
from assist.client.share import TerminalViewer
from assist.errors import AssistError, ConfigError, StateError
from assist.protocol import messages as m

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
                                  or value < 0):
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
        if args.get("method") not in ("key", "totp", "attest"):
            raise ConfigError(f"{where}: verify needs a method: key, totp or attest")
        if args["method"] == "attest":
            _need(args, "note", str, where)
    elif kind == "ask":
        if args.get("scope") not in ("annotate", "control", "run"):
            raise ConfigError(f"{where}: ask needs a scope: annotate, control or run")
        args.setdefault("seconds", 0)
    elif kind == "collect":
        args.setdefault("lines", 5)
        _need(args, "name", str, where)
        _need(args, "lines", int, where)
    elif kind == "annotate":
        args.setdefault("kind", "box")
        if args["kind"] not in ("box", "arrow", "highlight", "label"):
            raise ConfigError(f"{where}: annotate kind is box, arrow, highlight or label")
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
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None


def load_runbook(path: Path) -> Runbook:
    """Read and validate a runbook file."""
    return parse_runbook(read_yaml(path), str(path))


class RunbookRunner:
    """Run one runbook in one live session, as the agent.

    The runner reads the agent's events itself (screen, answers, revokes), so
    give it an :class:`AgentClient` whose events nobody else consumes.

    Args:
        agent: the agent's client, said hello.
        session: the live session.
        runbook: what to do.
        on_step: told ``(index, step)`` before each step runs.
        timeout: default seconds a step waits for the user.
    """

    def __init__(self, agent: AgentClient, session: str, runbook: Runbook,
                 on_step: Callable[[int, Step], None] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.agent = agent
        self.session = session
        self.runbook = runbook
        self.on_step = on_step or (lambda i, s: None)
        self.timeout = timeout
        self.viewer = TerminalViewer(session)
        self.grants: dict[str, str] = {}
        self.result = RunResult(runbook.name, session)
        self._stop: asyncio.Future[str] | None = None
        self._changed = asyncio.Event()
        self._marks = 0
        self._ending = False
        self._answers: asyncio.Queue[m.Msg] = asyncio.Queue()

    async def run(self) -> RunResult:
        """Run every step; return the result (``ok`` False with a reason if stopped)."""
        self._stop = asyncio.get_running_loop().create_future()
        pump = asyncio.ensure_future(self._pump())
        try:
            try:
                await self.agent.resync(self.session)
            except AssistError as exc:
                self.result.failed, self.result.reason = "start", exc.message
                return self.result
            total = len(self.runbook.steps)
            for index, step in enumerate(self.runbook.steps, 1):
                self.on_step(index, step)
                try:
                    if step.kind != "say":
                        await self.agent.chat(self.session, f"[{self.runbook.name}] step "
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
            if getattr(msg, "session", None) != self.session:
                continue
            if self.viewer.handle(msg):
                self.viewer.emulator.feed(b"")
                self._changed.set()
            elif isinstance(msg, m.GrantAnswer | m.Verified):
                await self._answers.put(msg)
            elif isinstance(msg, m.Revoke):
                self._halt("the user revoked the permissions")
            elif isinstance(msg, m.KeysRefused):
                self._halt(f"the user's machine refused the keys ({msg.reason})")
            elif isinstance(msg, m.Ended | m.UserLost):
                self.result.ended = True
                if not self._ending:  # our own `end` step is no reason to stop
                    self._halt("the session ended")
        self._halt("lost the connection to the broker")

    def _halt(self, why: str) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(why)

    async def _answer(self, kind: type[m.Msg], timeout: float, scope: str = "") -> m.Msg:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self._answers.get()
                    # Answers fan out to all the agent's connections: take only ours.
                    if isinstance(msg, kind) and getattr(msg, "scope", scope) == scope:
                        return msg
        except TimeoutError:
            raise RunStopped(f"the user did not answer within {timeout:g} s") from None

    async def _do(self, step: Step) -> None:
        a = step.args
        timeout = float(a.get("timeout", self.timeout))
        if step.kind == "say":
            await self.agent.chat(self.session, a["text"])
        elif step.kind == "verify":
            await self.agent.verify(self.session, a["method"], a.get("note", ""))
            verified = await self._answer(m.Verified, timeout)
            assert isinstance(verified, m.Verified)
            if not verified.ok:
                raise RunStopped(f"identity not verified: {verified.message}")
        elif step.kind == "ask":
            await self.agent.ask_grant(self.session, a["scope"], float(a["seconds"]))
            answer = await self._answer(m.GrantAnswer, timeout, a["scope"])
            assert isinstance(answer, m.GrantAnswer)
            if not answer.allowed:
                raise RunStopped(f"the user declined {a['scope']}")
            self.grants[answer.scope] = answer.grant
        elif step.kind == "type":
            grant = self.grants.get("run") or self.grants.get("control")
            if grant is None:
                raise StateError("typing needs a `run` or `control` grant: add an `ask` step")
            await self.agent.send_keys(self.session, grant, a["text"].encode())
        elif step.kind == "wait":
            await self._wait_text(a["text"], timeout)
        elif step.kind == "collect":
            lines = [line.rstrip() for line in self.viewer.emulator.text() if line.strip()]
            self.result.collected[a["name"]] = lines[-int(a["lines"]):]
        elif step.kind == "annotate":
            await self._annotate(a)
        elif step.kind == "sleep":
            await asyncio.sleep(float(a["seconds"]))
        elif step.kind == "end":
            self._ending = True
            await self.agent.end(self.session, a["root_cause"], bool(a["resolved"]))
            self.result.ended = True

    async def _wait_text(self, pattern: str, timeout: float) -> None:
        found = re.compile(pattern)
        try:
            async with asyncio.timeout(timeout):
                while not found.search("\n".join(self.viewer.emulator.text())):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise RunStopped(f"`{pattern}` did not appear within {timeout:g} s") from None

    async def _annotate(self, a: dict[str, Any]) -> None:
        grant = self.grants.get("annotate", "")
        self._marks += 1
        mark = m.Annotation(id=f"rb{self._marks}",
                            kind=a["kind"], x=int(a["x"]), line=int(a["row"]),
                            x2=int(a.get("x2", a["x"])), line2=int(a.get("row2", a["row"])),
                            text=str(a.get("text", "")), ttl=float(a.get("ttl", 30)),
                            relative=True)
        await self.agent.annotate(self.session, grant, mark)
