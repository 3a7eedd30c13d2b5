"""Who is connected: one control channel (:class:`Client`) and an agent's channels.

An agent may hold several connections at once: the console, plus scripts
acting on its sessions (``assist agent chat``, a runbook). They share one
presence (:class:`AgentLinks`): events fan out to all of them, and the agent
is gone (its session back at the front of the queue) only when the last one
closes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from assist.protocol import messages as m
from assist.transport.channel import ChannelClosed, MessageChannel
from assist.transport.ssh import Peer

log = logging.getLogger("assist.broker.hub")


@dataclass(eq=False)
class Client:
    """One connected control channel."""

    channel: MessageChannel
    peer: Peer
    host: str = ""
    os_user: str = ""
    hello: bool = False
    session: str | None = None
    streams: set[str] = field(default_factory=set)
    """Sessions whose terminal stream this (agent) connection watches."""
    log: logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.LoggerAdapter(log))

    def send(self, msg: m.Msg) -> None:
        """Queue a message; a client that is gone is simply skipped."""
        with contextlib.suppress(ChannelClosed):
            self.channel.send_nowait(msg)


Handler = Callable[[Client, Any], Awaitable[None]]


@dataclass(eq=False)
class AgentLinks:
    """Every open connection of one agent."""

    name: str
    clients: list[Client] = field(default_factory=list)

    def send(self, msg: m.Msg) -> None:
        """Send to each connection of the agent."""
        for client in self.clients:
            client.send(msg)

    def send_stream(self, session: str, msg: m.Msg) -> None:
        """Send a terminal-stream message to the connections watching ``session``.

        Only the connection that accepted the session (the console) and those
        that asked for a picture (a runbook) watch it: a bot's queue watcher
        or a one-shot command must not pile up a user's output.
        """
        for client in self.clients:
            if session in client.streams:
                client.send(msg)

    def buffered(self, session: str) -> int:
        """Unsent bytes of the slowest connection watching ``session``."""
        return max((c.channel.buffered() for c in self.clients if session in c.streams),
                   default=0)

    def unwatch(self, session: str) -> None:
        """The session is over (or back in the queue): nobody watches it any more."""
        for client in self.clients:
            client.streams.discard(session)
