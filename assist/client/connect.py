"""Opening a link to the broker from the client config, with host key pinning."""

from __future__ import annotations

from collections.abc import Callable

from assist.client.link import Link
from assist.config import ClientConfig
from assist.errors import ConnectionFailed, HostKeyUnknown, Unreachable
from assist.transport import ssh

TrustPrompt = Callable[[str, str], bool]
"""``(address, fingerprint) -> bool``: ask whether to trust a broker on first contact."""


async def open_link(config: ClientConfig, role: str,
                    trust: TrustPrompt | None = None) -> tuple[Link, ClientConfig]:
    """Connect to the configured broker as ``role`` and start a :class:`Link`.

    On first contact (no pinned host key) ``trust`` is asked; a yes pins the
    key in the client config file, like ssh's known_hosts.

    Returns:
        The started link and the config (with the key pinned if it was new).

    Raises:
        ConnectionFailed: (or a subclass) if the broker cannot be used.
    """
    conn, config = await open_connection(config, role, trust)
    link = Link(conn.channel, on_close=conn.close)
    link.start()
    return link, config


async def reconnect(link: Link, config: ClientConfig, role: str,
                    trust: TrustPrompt | None = None) -> ClientConfig:
    """Carry ``link`` on over a new connection to the broker (after it dropped).

    Raises:
        ConnectionFailed: (or a subclass) if the broker cannot be used.
    """
    conn, config = await open_connection(config, role, trust)
    await link.close()
    link.rebind(conn.channel, on_close=conn.close)
    return config


async def open_connection(config: ClientConfig, role: str, trust: TrustPrompt | None = None
                          ) -> tuple[ssh.ClientConnection, ClientConfig]:
    """Open an SSH connection and control channel to the broker (see :func:`open_link`).

    A helpdesk of several nodes has several addresses: each is tried in turn,
    the last one that worked first, until one answers. Only an address that
    does not answer is passed over; a refused key or a wrong host key stops
    at once.

    Returns:
        The connection and the config aimed at the address that answered.

    Raises:
        ConnectionFailed: (or a subclass) if no broker can be used.
    """
    failures: list[tuple[str, ConnectionFailed]] = []
    for address in config.addresses:
        try:
            return await _open_one(config.at(address), role, trust)
        except ConnectionFailed as exc:
            if not isinstance(exc, Unreachable):
                raise
            failures.append((address, exc))
    if len(failures) == 1:
        raise failures[0][1]
    why = "; ".join(f"{a}: {getattr(e, 'why', '') or e.message}" for a, e in failures)
    raise Unreachable(f"cannot reach any of the helpdesk's brokers ({why}). Is `assist "
                      "serve` running on one of them?", "no broker answers")


async def _open_one(config: ClientConfig, role: str, trust: TrustPrompt | None
                    ) -> tuple[ssh.ClientConnection, ClientConfig]:
    try:
        conn = await ssh.connect(config.host, config.port, role, config.host_key, config.key)
    except HostKeyUnknown as exc:
        address = f"{config.host}:{config.port}"
        if trust is None or not trust(address, exc.fingerprint):
            raise ConnectionFailed(
                f"not connecting: the broker at {address} (key {exc.fingerprint}) is not "
                "trusted. Check the fingerprint with your helpdesk, then run again and "
                "answer yes, or pass --yes."
            ) from None
        config = config.pinned(exc.public_key)
        conn = await ssh.connect(config.host, config.port, role, config.host_key, config.key)
    config.remember_key(role)
    return conn, config
