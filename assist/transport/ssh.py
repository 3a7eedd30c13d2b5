"""SSH transport: asyncssh server and client adapters.

Each client opens one SSH session channel and speaks the assist protocol over
its stdin/stdout as JSON lines. The SSH username is the role the client asks
for (``user`` or ``agent``); the broker decides from the key whether that is
allowed. The client pins the broker's host key like ``known_hosts``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncssh
from asyncssh.public_key import CERT_TYPE_USER, SSHOpenSSHCertificate

from assist.core.pubkey import fingerprint as blob_fingerprint
from assist.errors import (
    AuthRefused,
    ConfigError,
    HostKeyMismatch,
    HostKeyUnknown,
    Unreachable,
)
from assist.files import SSH_KEYS, unreadable, write_private
from assist.transport import ssh_packets
from assist.transport.channel import MessageChannel
from assist.transport.peer import Peer

log = logging.getLogger(__name__)
ssh_packets.install()

ROLES = ("user", "agent", "enrol")
"""What a client may log in as (the SSH user name)."""
WINDOW = 32 * 1024
"""SSH channel window the broker grants each client (see :func:`listen`)."""
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
           "chacha20-poly1305@openssh.com", "aes256-ctr", "aes128-ctr")
"""Ciphers offered, best first. AES-GCM is hardware-accelerated and one call per
packet in the cryptography library; chacha20-poly1305 (asyncssh's first choice)
costs about ten times as much CPU per packet, which is most of a keystroke's
round trip through the broker."""
AGENT_KEEPALIVE = (2.0, 2)
"""Keepalive interval and unanswered count for agents: a stopped console (SIGSTOP,
a frozen laptop) is noticed within about 6 s, so its user goes back to the
front instead of waiting on silence."""


class SSHStream:
    """Adapts an asyncssh reader/writer pair to :class:`~assist.transport.ByteStream`."""

    def __init__(
        self,
        reader: asyncssh.SSHReader[bytes],
        writer: asyncssh.SSHWriter[bytes],
        closer: Callable[[], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._closer = closer
        self.lost = ""

    async def read(self, n: int) -> bytes:
        """Read up to ``n`` bytes; ``b""`` when the connection is gone.

        Why it went is kept in :attr:`lost` (``"silent"`` when the peer
        stopped answering keepalives: a stopped or cut-off process).
        """
        try:
            return await self._reader.read(n)
        except (asyncssh.Error, OSError) as exc:
            reason = str(getattr(exc, "reason", "") or exc)
            self.lost = "silent" if "keepalive" in reason.lower() else reason
            return b""

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer; silently dropped once the channel is closing."""
        try:  # a try costs nothing here; a suppress() context, made for every line, does
            self._writer.write(data)
        except (asyncssh.Error, OSError):
            return

    async def drain(self) -> None:
        """Wait for SSH flow control to accept more data."""
        try:
            await self._writer.drain()
        except asyncssh.Error as exc:
            raise ConnectionError(str(exc)) from None

    def buffered(self) -> int:
        """Bytes waiting in the SSH channel's send buffer."""
        return int(self._writer.channel.get_write_buffer_size())

    def close(self) -> None:
        """Close the channel."""
        self._closer()


def openssh_key(key: asyncssh.SSHKey) -> str:
    """Return ``key`` as ``type base64`` (no comment), the form we pin."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def key_fingerprint(openssh: str) -> str:
    """Fingerprint of a key given as an OpenSSH line."""
    return blob_fingerprint(base64.b64decode(openssh.split()[1]))


# -- server --------------------------------------------------------------------


Authorizer = Callable[[str, str], "Peer | None"]
"""``(role, fingerprint) -> Peer`` or ``None`` to refuse the key."""
Handler = Callable[[MessageChannel, Peer], Awaitable[None]]


PROVISIONAL_GRACE = 15.0
"""Seconds a provisional login (enrolling, or a key still to show its certificate)
has to open its session; then it is closed."""
MAX_PROVISIONAL = 16
"""Provisional logins from one address at once."""


class _BrokerSSHServer(asyncssh.SSHServer):
    def __init__(self, authorize: Authorizer, live: set[asyncssh.SSHServerConnection],
                 serving: set[object], provisional: collections.Counter[str]) -> None:
        self._authorize = authorize
        self._live = live
        self._serving = serving
        self._provisional = provisional
        self._counted = ""
        """The address this connection is counted under as provisional, if it is."""
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._live.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self._conn)
        self._release()

    def _release(self) -> None:
        """No longer provisional: its slot of the address is free again."""
        if self._counted:
            self._provisional[self._counted] -= 1
            if self._provisional[self._counted] <= 0:
                del self._provisional[self._counted]
            self._counted = ""

    def _admit_provisional(self, address: str) -> bool:
        """Any key may log in to enrol or to show a certificate: few at once from one
        address, and each only briefly unless it opens its session."""
        if self._counted:
            return True  # asked again for the same connection (query, then signature)
        if self._provisional[address] >= MAX_PROVISIONAL:
            log.warning("refused a provisional login from %s: %d already", address,
                        MAX_PROVISIONAL)
            return False
        self._provisional[address] += 1
        self._counted = address
        asyncio.get_running_loop().call_later(PROVISIONAL_GRACE, self._expire)
        return True

    def _expire(self) -> None:
        conn = self._conn
        if conn is not None and conn not in self._serving and conn in self._live:
            conn.close()  # logged in, never opened its session
        else:
            # It opened its session: the broker's own limits (a hello deadline, guests
            # per address) hold it from here, so it no longer keeps a slot.
            self._release()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if username not in ROLES or self._conn is None:
            return False
        line = openssh_key(key)
        peer = self._authorize(username, key_fingerprint(line))
        if peer is None:
            return False
        address = self._conn.get_extra_info("peername", ("", 0))[0]
        if (peer.role == "enrol" or peer.certificate_needed) \
                and not self._admit_provisional(address):
            return False
        self._conn.set_extra_info(assist_peer=dataclasses.replace(peer, address=address,
                                                                  key=line))
        if peer.role == "agent":
            self._conn.set_keepalive(*AGENT_KEEPALIVE)
        return True


@dataclass(frozen=True)
class UserCertificate:
    """An OpenSSH user certificate whose signature and validity were checked.

    Attributes:
        key: fingerprint of the key it certifies.
        authority: fingerprint of the key that signed it (the CA).
        principals: the names it is valid for.
        sources: the networks it may be used from (``source-address``), if limited.
    """

    key: str
    authority: str
    principals: tuple[str, ...]
    sources: tuple[str, ...] = ()

    def allows(self, address: str) -> bool:
        """Whether it may be used from ``address`` (``source-address``, as sshd checks)."""
        if not self.sources:
            return True
        try:
            here = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(here in ipaddress.ip_network(net, strict=False) for net in self.sources)


def user_certificate(text: str) -> UserCertificate:
    """Read an OpenSSH user certificate (a ``*-cert.pub`` line) valid now.

    Raises:
        AuthRefused: it cannot be read, its signature is wrong, it is not a user
            certificate, or it is not valid now (the message says which).
    """
    try:
        cert = asyncssh.import_certificate(text.strip())
    except (asyncssh.KeyImportError, ValueError):
        raise AuthRefused("your certificate cannot be read, or its signature is wrong: "
                          "ask your helpdesk for a new one") from None
    if not isinstance(cert, SSHOpenSSHCertificate):
        raise AuthRefused("an X.509 certificate cannot be used; use an OpenSSH one")
    try:
        cert.validate(CERT_TYPE_USER, None)
    except ValueError as exc:
        said = {"Certificate expired": "your certificate has expired",
                "Certificate not yet valid": "your certificate is not valid yet",
                "Invalid certificate type": "that is a host certificate, not a user one"}
        raise AuthRefused(f"{said.get(str(exc), str(exc))}; ask your helpdesk for a new "
                          "one") from None
    sources = cast(Sequence[object], cert.options.get("source-address") or ())
    return UserCertificate(key_fingerprint(openssh_key(cert.key)),
                           key_fingerprint(openssh_key(cert.signing_key)),
                           tuple(cert.principals), tuple(str(net) for net in sources))


def generate_key_pair(path: Path, comment: str = "") -> str:
    """Write a new Ed25519 key pair (``path`` and ``path.pub``); return the public line.

    Raises:
        ConfigError: if the files cannot be written.
    """
    try:
        key = asyncssh.generate_private_key("ssh-ed25519", comment=comment or None)
        write_private(path, key.export_private_key())  # 0600 from the first byte
        key.write_public_key(str(path) + ".pub")
    except (OSError, asyncssh.KeyExportError) as exc:
        raise ConfigError(f"cannot write key {path}: {exc}") from None
    return openssh_key(key)


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Load the broker's host key, generating an Ed25519 key on first run.

    Raises:
        ConfigError: if the key file is unreadable or cannot be created.
    """
    try:
        if path.exists():
            return asyncssh.read_private_key(str(path))
        key = asyncssh.generate_private_key("ssh-ed25519")
        write_private(path, key.export_private_key())  # 0600 from the first byte
        log.info("generated host key %s", path)
        return key
    except (OSError, asyncssh.KeyImportError, asyncssh.KeyExportError) as exc:
        raise ConfigError(f"cannot use host key {path}: {exc}") from None


def load_host_key(path: Path) -> asyncssh.SSHKey:
    """Load the broker's host key, which must exist (commands other than ``serve``
    speak for a broker: a key made up here would be one no broker presents).

    Raises:
        ConfigError: if there is none at ``path``, or it cannot be read.
    """
    if not path.exists():
        raise ConfigError(f"there is no host key at {path}: give the broker's own with "
                          "--host-key (or --config, as for assist serve)")
    return load_or_create_host_key(path)


class Listener:
    """A listening SSH server and the connections it accepted."""

    def __init__(self, acceptor: asyncssh.SSHAcceptor,
                 live: set[asyncssh.SSHServerConnection]) -> None:
        self._acceptor = acceptor
        self._live = live

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._acceptor.get_port())

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        self._acceptor.close()
        for conn in list(self._live):
            conn.close()
        for conn in list(self._live):
            with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                await asyncio.wait_for(conn.wait_closed(), 2)
        await self._acceptor.wait_closed()


async def listen(
    host: str,
    port: int,
    host_key: asyncssh.SSHKey,
    authorize: Authorizer,
    handler: Handler,
) -> Listener:
    """Start the SSH server; ``handler`` runs once per client control channel.

    Raises:
        ConfigError: if the address cannot be bound.
    """
    live: set[asyncssh.SSHServerConnection] = set()

    serving: set[object] = set()  # connections that have their session
    provisional: collections.Counter[str] = collections.Counter()

    async def on_process(process: asyncssh.SSHServerProcess[bytes]) -> None:
        peer: Peer | None = process.get_extra_info("assist_peer")
        # Closing a client closes its whole SSH connection, not just the channel:
        # a client cut off (flooding, not reading) must not open another one on it.
        conn = process.channel.get_connection()
        if conn in serving:
            # One client per connection: more channels would multiply its bounds.
            process.stderr.write(b"assist: one session per connection\n")
            process.exit(1)
            return
        serving.add(conn)
        stream = SSHStream(process.stdin, process.stdout, conn.close)
        channel = MessageChannel(stream)
        try:
            if peer is not None:
                await handler(channel, peer)
        finally:
            serving.discard(conn)
            channel.close()
            process.exit(0)

    try:
        acceptor = await asyncssh.create_server(
            lambda: _BrokerSSHServer(authorize, live, serving, provisional),
            host,
            port,
            server_host_keys=[host_key],
            process_factory=on_process,
            encryption_algs=list(CIPHERS),
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            # Messages, not typing: no line editor between the channel and the hub.
            line_editor=False,
            # What a client may send before the hub has read it. asyncssh decrypts
            # every packet that arrives in one go, so a client flooding tiny packets
            # could hold the loop for as long as a 2 MiB window lasts (~0.7 s);
            # 32 KiB keeps that to a few ms and still carries far more than a
            # terminal prints.
            window=WINDOW,
            # A cut network (no FIN, no RST) is noticed within ~15 s: an agent's
            # user goes back to the front of the queue instead of waiting on silence.
            keepalive_interval=5,
            keepalive_count_max=3,
            login_timeout=30,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return Listener(acceptor, live)


# -- client --------------------------------------------------------------------



_UNREACHABLE = {
    errno.ECONNREFUSED: "nothing answers on that port",
    errno.ECONNRESET: "it closed the connection",
    errno.ECONNABORTED: "it closed the connection",
    errno.EHOSTUNREACH: "the network does not reach it",
    errno.ENETUNREACH: "the network does not reach it",
    errno.ETIMEDOUT: "it did not answer",
}


def _unreachable(exc: BaseException) -> str:
    """Why a connection failed, in words (not "Connect call failed ('10.1.2.3', 2222)")."""
    if isinstance(exc, socket.gaierror):
        return "that name is not known"
    if isinstance(exc, asyncssh.Error):
        return "the connection broke off"
    return _UNREACHABLE.get(getattr(exc, "errno", None) or 0, "the connection failed")


def _default_keys() -> str:
    """Which keys a connection without a named key will try, in words.

    Raises:
        ConfigError: there are none (no key in ``~/.ssh``, no ssh-agent).
    """
    found = [f"~/.ssh/{n}" for n in SSH_KEYS if (Path.home() / ".ssh" / n).is_file()]
    if os.environ.get("SSH_AUTH_SOCK"):
        found.append("the keys in ssh-agent")
    if not found:
        raise ConfigError("no SSH key found; run `assist help --join ...` with the invite "
                          "your helpdesk sent, or pass --key")
    return " and ".join(found)



class _PinningClient(asyncssh.SSHClient):
    """Trusts exactly the pinned host key; remembers what the broker showed."""

    def __init__(self, pinned: str) -> None:
        self.pinned = pinned
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.seen = openssh_key(key)
        return bool(self.pinned) and self.seen == self.pinned


@dataclass
class ClientConnection:
    """An open control channel to the broker."""

    channel: MessageChannel
    host_key: str
    _conn: asyncssh.SSHClientConnection

    async def close(self) -> None:
        """Close the channel and the SSH connection."""
        self.channel.close()
        self._conn.close()
        with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self._conn.wait_closed(), 2)


async def connect(
    host: str,
    port: int,
    role: str,
    pinned: str,
    key: Path | None = None,
    timeout: float = 10.0,
) -> ClientConnection:
    """Connect to the broker as ``role`` and open the control channel.

    ``key`` is a private key file; without it the usual ``~/.ssh/id_*`` keys
    and ssh-agent are tried.

    Raises:
        HostKeyUnknown: first contact, nothing pinned (the error carries the key).
        HostKeyMismatch: the broker's key is not the pinned one.
        AuthRefused: no offered key is registered for ``role``.
        ConfigError: the key file is missing or passphrase-protected.
        ConnectionFailed: the broker cannot be reached.
    """
    client = _PinningClient(pinned)
    options: dict[str, Any] = {}
    if key is not None:
        try:  # a key that cannot be read must not pass for a broker out of reach
            with key.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise ConfigError(unreadable(key, "key file", exc)) from None
        options.update(client_keys=[str(key)], agent_path=None)
        tried = f"key {key}"
    else:
        tried = _default_keys()
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(
                host, port, username=role, known_hosts=(), config=None,
                client_factory=lambda: client, preferred_auth="publickey",
                encryption_algs=list(CIPHERS),
                keepalive_interval=15, keepalive_count_max=4, **options,
            ),
            timeout,
        )
        stdin, stdout, _ = await conn.open_session(encoding=None)
    except asyncssh.HostKeyNotVerifiable:
        seen = client.seen or ""
        fp = key_fingerprint(seen) if seen else "unknown"
        if pinned:
            raise HostKeyMismatch(
                f"the broker at {host}:{port} presented key {fp}, not the pinned one. "
                "Someone may be intercepting the connection; if the broker's key was "
                f"changed on purpose, remove the line of {host}:{port} from [known_brokers] "
                "in your client.toml."
            ) from None
        raise HostKeyUnknown(
            f"the broker at {host}:{port} is not known yet (key {fp})", fp, seen
        ) from None
    except asyncssh.PermissionDenied:
        raise AuthRefused(
            f"the broker refused {tried} for the {role} role. Ask the helpdesk for an "
            "invite (assist help --join ...), or to register your public key: "
            f"assist {role}s add NAME --key YOUR_KEY.pub"
        ) from None
    except asyncssh.KeyImportError as exc:
        raise ConfigError(
            f"cannot use key {key}: {exc}. If it has a passphrase, load it into "
            "ssh-agent (ssh-add) and run without --key."
        ) from None
    except TimeoutError:
        raise Unreachable(f"the broker at {host}:{port} did not answer in {timeout:g} s",
                          f"no answer in {timeout:g} s") from None
    except (OSError, asyncssh.Error) as exc:
        why = _unreachable(exc)
        raise Unreachable(
            f"cannot reach the broker at {host}:{port}: {why}. Is `assist serve` running "
            "there?", why) from None
    stream = SSHStream(stdout, stdin, stdin.channel.close)
    return ClientConnection(MessageChannel(stream), client.seen or pinned, conn)
