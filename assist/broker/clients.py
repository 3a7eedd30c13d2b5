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

    def buffered(self) -> int:
        """Unsent bytes of the slowest connection (a lagging view is resynced)."""
        return max((c.channel.buffered() for c in self.clients), default=0)
