"""Which local addresses the media layer offers as ICE host candidates.

aioice gathers host candidates from every interface of the machine and leaves
loopback out (``aioice.ice.get_host_addresses``). Tests, benchmarks and
``assist demo`` must keep every packet on 127.0.0.1, and a site may want to
offer only one interface, so :class:`~assist.media.peer.MediaPeer` takes a
``host_addresses`` setting.

aioice has no per-connection option for it and aiortc builds the aioice
``Connection`` itself, so this module wraps ``aioice.ice.get_host_addresses``
once with a dispatcher that consults a :class:`contextvars.ContextVar`:

* unset (the default, and in every task not started by a scoped peer) the
  wrapper calls aioice's own function: behaviour is unchanged;
* inside :func:`scoped_host_addresses` it returns the given addresses.

aiortc gathers candidates inside ``setLocalDescription`` through
``asyncio.gather``, whose tasks inherit the caller's context, so the setting
reaches exactly the peer that set it, even with several peers in one process.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aioice.ice

from assist.media.errors import MediaError

log = logging.getLogger(__name__)

LOOPBACK: tuple[str, ...] = ("127.0.0.1",)
"""Host addresses that keep every media packet on this machine (tests, demo)."""

_override: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "assist_media_host_addresses", default=None)
_original: list[Callable[..., list[str]]] = []
"""aioice's own function, once :func:`install` wrapped it."""


def _dispatch(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _override.get()
    if addresses is None:
        return _original[0](use_ipv4, use_ipv6)
    return [a for a in addresses
            if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]


def install() -> None:
    """Wrap aioice's address lookup once (idempotent; harmless when unused)."""
    current: Any = aioice.ice.get_host_addresses
    if current is _dispatch:
        return
    _original[:] = [current]
    aioice.ice.get_host_addresses = _dispatch


def validate(addresses: Sequence[str]) -> tuple[str, ...]:
    """Check ``addresses`` are literal IP addresses and return them as a tuple.

    Raises:
        MediaError: for a name or malformed address.
    """
    checked = []
    for address in addresses:
        try:
            checked.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise MediaError(f"media host address {address!r} is not an IP address; "
                             "give addresses like 127.0.0.1 or ::1") from None
    if not checked:
        raise MediaError("no media host address given; leave the setting out to use all "
                         "interfaces, or give at least one address")
    return tuple(checked)


@contextlib.contextmanager
def scoped_host_addresses(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Limit ICE host candidates gathered in this context to ``addresses``.

    ``None`` leaves aioice's choice (every non-loopback interface) in place.
    """
    install()
    token = _override.set(addresses)
    try:
        yield
    finally:
        _override.reset(token)
