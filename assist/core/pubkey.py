"""OpenSSH public keys: parsing and fingerprints, without a crypto library.

The directory stores public keys as OpenSSH one-line text; the broker matches
the key a client authenticated with by its SHA256 fingerprint, computed the
same way ``ssh-keygen -l`` does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from assist.core.text import one_line
from assist.errors import ConfigError
from assist.files import unreadable

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


@dataclass(frozen=True)
class PublicKey:
    """A parsed OpenSSH public key."""

    kind: str
    blob: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """The key's ``SHA256:...`` fingerprint, as ``ssh-keygen -l`` prints it."""
        return fingerprint(self.blob)

    @property
    def openssh(self) -> str:
        """The key as one OpenSSH line, without its comment."""
        return f"{self.kind} {base64.b64encode(self.blob).decode()}"


def fingerprint(blob: bytes) -> str:
    """Return the SHA256 fingerprint of a public key blob."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse(text: str, source: str = "key") -> PublicKey:
    """Parse one OpenSSH public key line.

    Raises:
        ConfigError: with a hint when the text is a private key or not a key.
    """
    text = text.strip()
    if "PRIVATE KEY" in text:
        raise ConfigError(f"{source} is a private key; pass the public key (the .pub file)")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        # Only one would be registered, the rest silently kept as its comment.
        raise ConfigError(f"{source} holds {len(lines)} lines: give one public key per "
                          "file (one key is registered per command)")
    fields = text.split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise ConfigError(
            f"{source} is not an OpenSSH public key (expected a line like "
            "'ssh-ed25519 AAAA... comment'; make one with ssh-keygen -t ed25519)"
        )
    try:
        blob = base64.b64decode(fields[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        inner = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise ConfigError(f"{source}: the key data is damaged (bad base64)") from None
    if inner != fields[0]:
        raise ConfigError(f"{source}: the key data does not match its type {fields[0]}")
    # The comment is shown in listings: printable text, within bounds.
    return PublicKey(fields[0], blob, one_line(fields[2]) if len(fields) > 2 else "")


def load(path: Path) -> PublicKey:
    """Read and parse the public key file at ``path``.

    Raises:
        ConfigError: if the file is missing, unreadable, or not a public key.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(unreadable(path, "key file", exc)) from None
    return parse(text, str(path))
