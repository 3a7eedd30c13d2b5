"""The broker process: startup, serving, shutdown.

::

    broker = Broker(config)
    await broker.start()      # store opened, queue restored, SSH listening
    ...                       # broker.port is the bound port (config may say 0)
    await broker.stop()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncssh

from assist.broker.authorities import Authorities
from assist.broker.bus import Bus, LocalBus
from assist.broker.cluster import Cluster
from assist.broker.enrolment import Enrolment
from assist.broker.forwarding import Forwarding
from assist.broker.hub import Hub
from assist.broker.nats_bus import NatsBus
from assist.broker.remote import Links
from assist.config import BrokerConfig
from assist.core.clock import LoopClock
from assist.errors import StateError
from assist.store import Store
from assist.store.serving import Claim, claim_store
from assist.transport import ssh
from assist.transport.channel import MessageChannel
from assist.transport.peer import Login, Peer

log = logging.getLogger(__name__)


class Broker:
    """``assist serve``: the SSH server in front of the hub and the store."""

    def __init__(self, config: BrokerConfig, clock: Callable[[], float] = time.time,
                 bus: Bus | None = None) -> None:
        self.config = config
        self.clock = clock
        self._given_bus = bus
        self.bus: Bus | None = None
        self.cluster: Cluster | None = None
        self.links: Links | None = None
        self.store: Store | None = None
        self.hub: Hub | None = None
        self.enrolment: Enrolment | None = None
        self.authorities = Authorities()
        self.host_key: asyncssh.SSHKey | None = None
        self._server: ssh.Listener | None = None
        self._claim: Claim | None = None
        """This broker's claim on its store (see :mod:`assist.store.serving`)."""

    @property
    def port(self) -> int:
        """The port actually bound (useful when configured as 0)."""
        if self._server is None:
            raise StateError("the broker is not running")
        return self._server.port

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the broker's host key."""
        if self.host_key is None:
            raise StateError("the broker is not running")
        return ssh.key_fingerprint(ssh.openssh_key(self.host_key))

    @property
    def public_key(self) -> str:
        """The host key as an OpenSSH line (what clients pin)."""
        if self.host_key is None:
            raise StateError("the broker is not running")
        return ssh.openssh_key(self.host_key)

    async def start(self) -> None:
        """Open the store, restore the queue and start listening.

        Raises:
            StoreError, ConfigError: if the store, host key or address is unusable.
        """
        self.authorities = Authorities.load(self.config.trusted_user_ca_keys,
                                            self.config.trusted_agent_ca_keys)
        self._hold_store()
        try:
            self.store = Store(self.config.db, self.config.secret_key_file,
                               self.config.node_name)
            self.hub = Hub(self.config, self.store, LoopClock(self.clock), self.authorities)
            restored = self.hub.restore()
            await self._join_cluster()
            self.enrolment = Enrolment(self.store, self.clock, self.config.name)
            self.host_key = ssh.load_or_create_host_key(self.config.host_key_path)
            self._server = await ssh.listen(self.config.host, self.config.port, self.host_key,
                                            self._authorize, self._serve)
        except BaseException:
            await self._undo_start()
            raise
        self.store.audit.append(self.clock(), "broker", "start", None,
                                {"port": self.port, "restored": restored})
        log.info("listening on %s:%d (%d waiting restored)", self.config.host, self.port,
                 restored)

    async def _undo_start(self) -> None:
        """A start that failed half way: close what it opened, in reverse order."""
        await self._leave_cluster()
        if self.hub is not None:
            self.hub.close()
            self.hub = None
        if self.store is not None:
            self.store.close()
            self.store = None
        self._let_go_of_store()

    def _hold_store(self) -> None:
        """Claim the store: alone on our own, together with the other nodes with a bus."""
        if self._claim is None:
            self._claim = claim_store(str(self.config.db), shared=bool(self.config.bus))

    def _let_go_of_store(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    async def _join_cluster(self) -> None:
        """Join the helpdesk's other nodes on the bus (an in-process bus on its own)."""
        assert self.hub is not None
        bus = self._given_bus
        if bus is None:
            bus = NatsBus(self.config.bus, self.config.node_name) if self.config.bus \
                else LocalBus()
            await bus.start()
        self.bus = bus
        hub = self.hub
        self.links = Links(self.config.node_name, bus, self._serve_link)
        await self.links.start()
        hub.links = self.links
        hub.forwarding = Forwarding(self.links, hub.agents.get, hub.released)
        self.cluster = Cluster(self.config.node_name, bus, hub.clock, hub.queue,
                               hub.views.touch, hub.presence.failover.node_lost,
                               lambda: len(hub.roster.available()), hub.views.wallboard_soon,
                               self._node_restarted, witness=hub.store.nodes)
        hub.cluster = self.cluster
        await self.cluster.start()

    def _node_restarted(self, node: str) -> None:
        """Another node started again: links to its old run are gone; open new ones."""
        assert self.hub is not None and self.links is not None
        self.links.node_lost(node)
        if self.hub.forwarding is not None:
            self.hub.forwarding.restarted(node)

    async def _serve_link(self, channel: MessageChannel, peer: Peer) -> None:
        """An agent of another node, linked here for a session this node holds."""
        assert self.hub is not None and self.store is not None
        identity = self.store.directory.lookup(peer.fingerprint)
        if identity is None or identity.role != "agent" or identity.name != peer.name:
            log.warning("refused a link from %s for %s: not that agent's key", peer.address,
                        peer.name)
            channel.close()
            return
        await self.hub.serve(channel, peer)

    async def _leave_cluster(self) -> None:
        if self.links is not None:
            await self.links.close()
            self.links = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if self.bus is not None and self._given_bus is None:
            await self.bus.close()
        self.bus = None

    async def _serve(self, channel: MessageChannel, peer: Peer) -> None:
        assert self.hub is not None and self.enrolment is not None
        if peer.role == "enrol":
            await self.enrolment.serve(channel, peer)
        else:
            await self.hub.serve(channel, peer)

    def _authorize(self, role: str, fingerprint: str) -> Peer | None:
        assert self.store is not None
        if role == "enrol":
            # Any key may ask to be enrolled; only a good invite code registers it.
            return Peer("enrol", "", fingerprint, False, "")
        identity = self.store.directory.lookup(fingerprint)
        if identity is not None:
            if identity.role != role:
                log.warning("refused %s key %s asking for the %s role", identity.role,
                            fingerprint, role)
                return None
            return Peer(identity.role, identity.name, fingerprint, True, "")
        if role in ("user", "agent") and self.authorities.trusts(role):
            # Perhaps certified: the hello must show the certificate (see Authorities).
            login: Login = "agent" if role == "agent" else "user"
            return Peer(login, f"guest-{fingerprint[7:15]}", fingerprint, False, "",
                        certificate_needed=True)
        if role == "user" and self.config.allow_unregistered_users:
            return Peer("user", f"guest-{fingerprint[7:15]}", fingerprint, False, "")
        log.info("refused unknown key %s for the %s role", fingerprint, role)
        return None

    async def stop(self) -> None:
        """Stop listening, drop connections and close the store."""
        if self.hub is not None:
            self.hub.closed = True  # what drops now is kept for the restart, not ended
        if self._server is not None:
            await self._server.close()
            self._server = None
        await self._leave_cluster()
        if self.hub is not None:
            self.hub.close()
        if self.store is not None:
            self.store.audit.append(self.clock(), "broker", "stop")
            self.store.close()
            self.store = None
        self._let_go_of_store()

    async def serve_forever(self) -> None:
        """Run until cancelled (Ctrl-C), then stop cleanly."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
