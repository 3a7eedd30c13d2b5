"""Relaying a live session: terminal stream, resize, chat, media signalling.

Handlers act on the :class:`~assist.broker.live.LiveSession` they are handed
(the hub looks it up and checks the sender belongs to it). The user's pty
bytes pass through untouched, encoded once for every watching connection;
each watcher's outbox drops frames it cannot take and has the session
resynced by snapshot once it caught up, so the user's shell never waits for
a slow agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from assist.broker.connection import Connection
from assist.broker.ledger import Ledger
from assist.broker.live import LiveSession
from assist.core.text import one_line
from assist.errors import StateError
from assist.protocol import messages as m

MAX_CHAT = 2000
"""Characters of a chat line the broker keeps and relays."""

LiveHandler = Callable[[LiveSession, Connection, Any], Awaitable[None]]


class Relay:
    """Handlers for the messages that flow inside a live session."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def handlers(self) -> dict[str, dict[type[m.Msg], LiveHandler]]:
        """Handlers by role, merged into the hub's table of live-session handlers."""
        return {
            "user": {m.Output: self._on_output, m.Snapshot: self._on_snapshot,
                     m.Resize: self._on_resize, m.Chat: self._on_user_chat,
                     m.Signal: self._on_user_signal},
            "agent": {m.Chat: self._on_agent_chat, m.Signal: self._on_agent_signal},
        }

    # -- terminal stream -------------------------------------------------------------

    async def _on_output(self, live: LiveSession, client: Connection, msg: m.Output) -> None:
        live.stream(msg)  # on its way first: the recording is not on the echo's path
        live.record_output(msg.data)

    async def _on_snapshot(self, live: LiveSession, client: Connection,
                           msg: m.Snapshot) -> None:
        live.size = (msg.cols, msg.rows)
        live.pictured()
        live.record_snapshot(msg.data, msg.cols, msg.rows)
        live.stream(msg)

    async def _on_resize(self, live: LiveSession, client: Connection, msg: m.Resize) -> None:
        live.size = (msg.cols, msg.rows)
        live.record_resize(msg.cols, msg.rows)
        live.stream(msg)

    # -- media signalling ---------------------------------------------------------------

    async def _on_user_signal(self, live: LiveSession, client: Connection,
                              msg: m.Signal) -> None:
        if live.agent is None:
            raise StateError("the agent is not connected (reconnecting)")
        live.relay_to_agent(msg)

    async def _on_agent_signal(self, live: LiveSession, client: Connection,
                               msg: m.Signal) -> None:
        live.relay_to_user(msg)

    # -- chat ------------------------------------------------------------------------

    def _chat(self, live: LiveSession, sender: str, role: str, text: str) -> None:
        text = one_line(text, MAX_CHAT)
        if not text:
            return
        if role == "user":
            live.room("agent")  # before it is kept and sent
        elif live.user is not None:  # an away user reads it in the history later
            live.room("user")
        at = self.ledger.log(live.id, "chat", f"{role}:{sender}", {"text": text})
        line = m.Chat(session=live.id, text=text, sender=sender, at=at)
        live.tell_user(line)
        live.to_agent(line)

    async def _on_user_chat(self, live: LiveSession, client: Connection, msg: m.Chat) -> None:
        self._chat(live, client.peer.name, "user", msg.text)

    async def _on_agent_chat(self, live: LiveSession, client: Connection, msg: m.Chat) -> None:
        self._chat(live, client.peer.name, "agent", msg.text)
