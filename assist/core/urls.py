"""Addresses fit to print: a store's or a bus's URL without the secrets it may carry.

``postgresql://user:secret@host/db``, ``...?password=secret`` and NATS's
``nats://user:secret@host`` or ``nats://TOKEN@host`` all hold a credential
that must never reach a log, a terminal or an error message. Pure.
"""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(://[^:/@?#]*):[^@/?#]*@")
_TOKEN = re.compile(r"^((?:nats|tls|ws|wss)://)[^:/@?#]+@", re.IGNORECASE)
_QUERY = re.compile(r"([?&](?:password|passwd|pass|token|auth_token|nkey|jwt)=)[^&#]*",
                    re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` with any password, token or credential parameter replaced by ``***``."""
    url = _TOKEN.sub(r"\1***@", url)
    url = _PASSWORD.sub(r"\1:***@", url)
    return _QUERY.sub(r"\1***", url)
