"""The one exception tree of assist.

Every error that can reach a person is an :class:`AssistError` whose message
says what happened and what to do. Library errors (asyncssh, sqlite3, OSError)
are converted where they enter the program; the CLI and TUIs catch only
``AssistError``.

::

    AssistError
    ├── ConfigError            bad or missing configuration, key files, paths
    ├── ProtocolError          a message that cannot be decoded or is not allowed
    │   ├── MessageTooLarge    a control message over the size limit
    │   └── DecodeFailure      a line that is no valid message (protocol.codec; keeps its rid)
    ├── StateError             an action that the session or queue state forbids
    │   ├── AlreadyWaiting     this key already holds a request (take it over instead)
    │   ├── Moved              another broker node holds the session now (store fence)
    │   └── GrantRefused       the grant rules refuse an action (core.grants; says which rule)
    ├── BusError               the bus between broker nodes (NATS) cannot be used
    ├── StoreError             the store (SQLite or PostgreSQL) cannot be read or written
    │   ├── NotFound           a named user, agent or session does not exist
    │   └── Duplicate          ... or already exists
    ├── InviteRefused          an invite code that is unknown, used up or expired
    ├── AuditError             the audit chain does not verify
    ├── MediaError             WebRTC negotiation or transport failed (desktop, voice)
    │   ├── MediaUnavailable   a device or codec is missing on this machine
    │   └── CaptureError       the desktop cannot be captured (no display, bad region)
    ├── ConnectionFailed       the broker cannot be reached or refused us
    │   ├── HostKeyUnknown     first contact: the broker's key is not pinned yet
    │   ├── HostKeyMismatch    the broker's key differs from the pinned one
    │   ├── AuthRefused        our key is not registered for the requested role
    │   ├── Unreachable        nothing answers at the broker's address (says why in words)
    │   └── ChannelClosed      the connection closed or was lost (transport.channel)
    ├── BrokerError            the broker answered a request with an error (client.link)
    ├── RunStopped             a runbook stopped before its end (client.runbook)
    └── RunFailed              ``assist agent run`` did not finish its runbook (cli.agent)
"""

from __future__ import annotations


class AssistError(Exception):
    """Base of every error assist reports to a person.

    Attributes:
        code: short machine-readable reason, used in ``--json`` output and in
            protocol error replies.
    """

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AssistError):
    """Configuration, key file or path problem."""

    code = "config"


class ProtocolError(AssistError):
    """A message that cannot be decoded, is unknown, or is not allowed here."""

    code = "protocol"


class MessageTooLarge(ProtocolError):
    """A control message over the size limit."""

    code = "too-large"


class StateError(AssistError):
    """An action the current session, queue or agent state forbids."""

    code = "state"


class AlreadyWaiting(StateError):
    """This key already holds a waiting or live request; join with takeover to move it.

    Attributes:
        session: the request the key holds.
    """

    code = "already-waiting"

    def __init__(self, message: str, session: str = "") -> None:
        super().__init__(message)
        self.session = session


class Moved(StateError):
    """This node no longer holds the session: another took it over (see failover).

    Attributes:
        session: the session that moved.
    """

    code = "moved"

    def __init__(self, message: str, session: str = "") -> None:
        super().__init__(message)
        self.session = session


class StoreError(AssistError):
    """The store cannot be read or written."""

    code = "store"


class BusError(AssistError):
    """The bus between broker nodes cannot be used."""

    code = "bus"


class NotFound(StoreError):
    """A named record does not exist."""

    code = "not-found"


class Duplicate(StoreError):
    """A record with that name or key already exists."""

    code = "duplicate"


class InviteRefused(AssistError):
    """An invite code that is unknown, used up or expired."""

    code = "invite"


class AuditError(AssistError):
    """The audit chain does not verify."""

    code = "audit"


class MediaError(AssistError):
    """Negotiating or running the media connection failed.

    aiortc, av and aioice errors are converted into this (or a subclass) in
    :mod:`assist.media`, where they enter the program.
    """

    code = "media"


class MediaUnavailable(MediaError):
    """A device or codec the media layer needs is missing on this machine."""

    code = "media-unavailable"


class CaptureError(MediaError):
    """The desktop cannot be captured (no display, monitor missing, region outside)."""

    code = "capture"


class ConnectionFailed(AssistError):
    """The broker cannot be reached, or the connection was lost."""

    code = "connection"


class HostKeyUnknown(ConnectionFailed):
    """The broker's host key is not pinned yet (first contact).

    Attributes:
        fingerprint: SHA256 fingerprint of the key the broker presented.
        public_key: the key in OpenSSH format, to pin once the person agrees.
    """

    code = "host-key-unknown"

    def __init__(self, message: str, fingerprint: str, public_key: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.public_key = public_key


class HostKeyMismatch(ConnectionFailed):
    """The broker's host key differs from the pinned one."""

    code = "host-key-mismatch"


class Unreachable(ConnectionFailed):
    """Nothing answers at the broker's address.

    Attributes:
        why: the reason in a few words ("nothing answers on that port").
    """

    code = "unreachable"

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class AuthRefused(ConnectionFailed):
    """The broker refused our key for the requested role."""

    code = "auth"
