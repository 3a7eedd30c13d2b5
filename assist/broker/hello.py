"""The hello: which protocol a new connection speaks and who it is.

Every connection's first message. A registered key is known already (SSH
told the broker whose key it is); an unregistered one is admitted here by a
certificate from a trusted authority, or as a guest user where the broker
allows guests, and is otherwise closed with a reason. An agent's hello also
says whether the connection watches the queue (the console does, a script
need not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from assist.broker.authorities import Authorities
from assist.broker.connection import Connection
from assist.broker.ledger import Ledger
from assist.core.text import printable
from assist.errors import AssistError, ProtocolError
from assist.protocol import PROTOCOL_VERSION
from assist.protocol import messages as m
from assist.store.directory import Directory


class Greeter:
    """Answers hellos.

    Args:
        broker: this broker's name, in every welcome.
        authorities: the certificate authorities trusted for each role.
        directory: the registered names (a certificate may not take one).
        ledger: where a certificate login is audited.
        allow_guests: unregistered users with no certificate may come in.
        admitted: told of a connection that proved who it is by a certificate.
        agent_hello: told of an agent connection once welcomed.
    """

    def __init__(self, broker: str, authorities: Authorities, directory: Directory,
                 ledger: Ledger, allow_guests: bool, admitted: Callable[[Connection], None],
                 agent_hello: Callable[[Connection], None]) -> None:
        self.broker = broker
        self.authorities = authorities
        self.directory = directory
        self.ledger = ledger
        self.allow_guests = allow_guests
        self.admitted = admitted
        self.agent_hello = agent_hello

    def hello(self, client: Connection, msg: m.Hello) -> None:
        """Welcome ``client`` (or close it, saying why).

        Raises:
            ProtocolError: for another protocol version, or a second hello.
        """
        if msg.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version {msg.version} is not supported (broker speaks "
                f"{PROTOCOL_VERSION}); upgrade assist on the older side")
        if client.hello:
            raise ProtocolError("hello was already sent")
        if client.peer.certificate_needed and not self._certified(client, msg):
            return
        client.hello = True
        client.host, client.os_user = printable(msg.host), printable(msg.os_user)
        peer = client.peer
        # Enrolling connections never reach the hub (see assist.broker.enrolment).
        role: m.Role = "agent" if peer.role == "agent" else "user"
        client.send(m.Welcome(version=PROTOCOL_VERSION, role=role, name=peer.name,
                              broker=self.broker, registered=peer.registered, rid=msg.rid))
        if peer.role == "agent":
            client.watch = msg.watch
            self.agent_hello(client)

    def _certified(self, client: Connection, msg: m.Hello) -> bool:
        """Admit an unregistered key by its certificate (or as a guest user, if the
        broker allows guests and none came); False when the connection was closed."""
        peer, certificate = client.peer, msg.certificate
        if not certificate and peer.role == "user" and self.allow_guests:
            client.peer = dataclasses.replace(peer, certificate_needed=False)
            return True
        try:
            name = self.authorities.admit(peer, certificate, self.directory)
        except AssistError as exc:
            client.log.info("refused a certificate login: %s", exc.message)
            client.kick(exc.code, exc.message, msg.rid)
            return False
        client.peer = dataclasses.replace(peer, name=name, registered=True,
                                          certificate_needed=False)
        self.admitted(client)
        self.ledger.audit(f"{peer.role}:{name}", "certificate-login", None,
                          {"fingerprint": peer.fingerprint})
        return True
