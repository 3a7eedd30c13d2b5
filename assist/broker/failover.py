"""When a node of the helpdesk dies: its sessions move to the survivors.

Every survivor notices the silence (see :mod:`assist.broker.cluster`) and
claims the dead node's unfinished sessions in the store; the claim is one
conditional update per session, so each goes to exactly one survivor. What
a survivor claims it restores as after a restart: waiting users keep their
places (offline until they resume here), live sessions wait for both sides.
An agent of this node who held one of them through a link has it here at
once; one whose session went to a third node is linked there. A user who
resumes here before this node noticed the silence has the session moved here
on the spot, as long as its node is not alive.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from assist.core.session import Session
from assist.errors import NotFound, StateError

if TYPE_CHECKING:
    from assist.broker.hub import Hub
    from assist.broker.presence import Presence

log = logging.getLogger(__name__)

RETARGET_EVERY = 1.0
"""Seconds between two looks at who took over a forwarded session."""
RETARGET_TRIES = 15
"""Looks before a forwarded session whose node died is given up."""


class Failover:
    """Taking over the sessions of nodes that died."""

    def __init__(self, hub: Hub, presence: Presence) -> None:
        self.hub = hub
        self.presence = presence

    def node_lost(self, node: str) -> int:
        """``node`` went silent: end its links, take over its sessions; return how many."""
        hub = self.hub
        if hub.links is not None:
            hub.links.node_lost(node)
        claimed = hub.store.sessions.claim(node, hub.clock.now())
        hub.ledger.audit("broker", "node-lost", None,
                         {"node": node, "sessions": len(claimed), "by": hub.config.node_name})
        self.presence.restore(claimed)
        for session in claimed:
            self._attach(session.id)
        if hub.forwarding is not None:
            for held in hub.forwarding.owned_by(node):
                if held.session not in hub.live:
                    self._retarget(held.session, RETARGET_TRIES)
        hub.views.wallboard_soon()
        return len(claimed)

    def _attach(self, session_id: str) -> None:
        """A session moved here whose agent is connected here: it has it back now."""
        hub = self.hub
        live = hub.live.get(session_id)
        if hub.forwarding is not None:
            hub.forwarding.sessions.pop(session_id, None)
        if live is None or live.session.agent is None:
            return
        links = hub.agents.get(live.session.agent)
        if links is None or not links.clients:
            return
        watchers = links.watchers(session_id) or links.clients[:1]
        self.presence._agent_back(live, links)
        for client in watchers:
            self.presence.show(live, client)

    def _retarget(self, session_id: str, tries: int) -> None:
        """Find the node that took a forwarded session over and link there."""
        hub = self.hub
        forwarding, cluster = hub.forwarding, hub.cluster
        if forwarding is None or cluster is None or session_id not in forwarding.sessions:
            return
        try:
            holder = hub.store.sessions.holder(session_id)
        except NotFound:
            forwarding.finish(session_id)
            return
        if holder in cluster.alive:
            forwarding.moved(session_id, holder)
        elif tries > 0:
            hub.clock.call_later(RETARGET_EVERY, self._retarget, session_id, tries - 1)
        else:
            log.warning("nobody took session %s over: the agent lets it go", session_id)
            forwarding.finish(session_id)

    def adopt(self, session: Session) -> None:
        """Take over one session a user resumes here whose node is gone.

        Raises:
            StateError: its node is still running (the user should try again, or
                there), or this node started too recently to know.
            NotFound: the place is not held by another node: it expired.
        """
        hub = self.hub
        holder = hub.store.sessions.holder(session.id)
        cluster = hub.cluster
        if cluster is None or holder in ("", hub.config.node_name):
            raise NotFound("that place in the queue has expired; join again")
        if holder in cluster.alive or not cluster.settled:
            raise StateError(f"your place is held by node {holder} of this helpdesk; "
                             "try again in a moment")
        self.presence.restore(hub.store.sessions.claim(holder, hub.clock.now(), session.id))
        self._attach(session.id)

    def moved_away(self, session_id: str) -> None:
        """The store says another node holds the session now (this node was taken for
        dead while cut off): let it go here, so that it goes on only there.

        The user's connection is closed (the app reconnects and resumes where the
        session is held); the agent's connections here are told the user left.
        """
        hub = self.hub
        log.warning("session %s moved to another node while this one was cut off: "
                    "let go here", session_id)
        live = hub.live.get(session_id)
        session = live.session if live is not None else hub.waiting.get(session_id)
        if session is None:
            return
        user = live.user if live is not None else hub.users.get(session_id)
        hub.let_go(session, "the session moved to another node", live)
        if user is not None:
            user.kick("moved", "your session moved to another node of the helpdesk; "
                      "connect again to go on")
