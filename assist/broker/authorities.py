"""Company certificates: keys an SSH certificate authority vouches for, unregistered.

A broker may trust certificate authorities (``trusted_user_ca_keys`` and
``trusted_agent_ca_keys`` in ``broker.toml``, as OpenSSH's
``TrustedUserCAKeys``). A key that is not in the directory then logs in
provisionally, and its hello must carry an OpenSSH user certificate that
certifies that very key, is signed by an authority trusted for the role, is
valid now and names at least one principal: the first one becomes the
person's name. Anything else closes the connection with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assist.core import pubkey
from assist.errors import AssistError, AuthRefused, ConfigError, NotFound
from assist.files import unreadable
from assist.store.directory import Directory, Role, check_name
from assist.transport import ssh
from assist.transport.peer import Peer

ROLES: tuple[Role, ...] = ("user", "agent")


def _fingerprints(path: Path | None, what: str) -> frozenset[str]:
    """The fingerprints of the CA keys in ``path`` (one OpenSSH public key a line)."""
    if path is None:
        return frozenset()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(unreadable(path, what, exc)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a list of OpenSSH public keys (not text)") from None
    lines = [line.strip() for line in text.splitlines()]
    found = frozenset(pubkey.parse(line, f"{path}").fingerprint for line in lines
                      if line and not line.startswith("#"))
    if not found:
        raise ConfigError(f"{path} holds no certificate authority key")
    return found


@dataclass(frozen=True)
class Authorities:
    """The certificate authorities a broker trusts, by role (fingerprints)."""

    user: frozenset[str] = field(default_factory=frozenset)
    agent: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, user: Path | None, agent: Path | None) -> Authorities:
        """Read the CA key files named in the broker config.

        Raises:
            ConfigError: a file is unreadable, empty or holds something else.
        """
        return cls(_fingerprints(user, "trusted_user_ca_keys file"),
                   _fingerprints(agent, "trusted_agent_ca_keys file"))

    def trusts(self, role: str) -> bool:
        """Whether any authority is trusted for ``role``."""
        return bool(self.user if role == "user" else self.agent if role == "agent" else ())

    def admit(self, peer: Peer, certificate: str, directory: Directory) -> str:
        """The name ``peer`` is admitted as, by ``certificate``.

        A certificate never speaks for someone in the directory: a registered
        user or agent logs in with their registered key, so a principal that
        names one is refused (a CA cannot take over a registered name).

        Raises:
            AuthRefused: no certificate, or one that does not admit this key
                for this role now, from this address (the message says why and
                what to do).
        """
        if not certificate:
            raise AuthRefused(f"your key is not registered for the {peer.role} role and it "
                              "has no certificate; ask your helpdesk for an invite or a "
                              "certificate")
        cert = ssh.user_certificate(certificate)
        if cert.key != peer.fingerprint:
            raise AuthRefused("that certificate is for another key than the one you logged "
                              "in with")
        trusted = self.user if peer.role == "user" else self.agent
        if cert.authority not in trusted:
            raise AuthRefused(f"your certificate is not signed by an authority this broker "
                              f"trusts for {peer.role}s")
        if not cert.principals:
            raise AuthRefused("your certificate names nobody (it has no principal); ask "
                              "for one with your name")
        if not cert.allows(peer.address):
            raise AuthRefused(f"your certificate may not be used from {peer.address} "
                              "(its source-address)")
        try:
            name = check_name(cert.principals[0])
        except AssistError as exc:
            raise AuthRefused(f"your certificate's principal cannot be a name here: "
                              f"{exc.message}") from None
        for role in ROLES:
            try:
                directory.get(role, name)
            except NotFound:
                continue
            raise AuthRefused(f"{name} is a registered {role} here: log in with the key "
                              "registered for them, not a certificate")
        return name
