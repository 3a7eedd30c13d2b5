"""Secrets in the store, sealed: a copy of the database alone reveals none of them.

TOTP secrets are sealed with AES-GCM under a key kept in its own file (mode
0600, next to the broker's host key), bound to the user they belong to, so a
sealed value cannot be moved to another user's row either::

    sealer = Sealer.load_or_create(Path("secret_key"))
    sealed = sealer.seal("JBSWY3DPEHPK3PXP", "alice")     # "sealed:v1:..."
    sealer.open(sealed, "alice")                           # "JBSWY3DPEHPK3PXP"

The key file holds one key per line, the newest first: values are sealed with
the first and opened with whichever fits, so a rotation (:meth:`Sealer.rotate`
writes the new key in front, the store re-seals every value, then the old key
is dropped) is safe to interrupt at any point.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from assist.errors import StoreError
from assist.files import write_private

PREFIX = "sealed:v1:"
_NONCE = 12


def is_sealed(value: str) -> bool:
    """True for a value this module sealed (anything else is a plain legacy value)."""
    return value.startswith(PREFIX)


class Sealer:
    """Seals and opens short secrets with the keys of one key file."""

    def __init__(self, path: Path, keys: list[bytes]) -> None:
        if not keys:
            raise StoreError(f"the secret key file {path} holds no key")
        self.path = path
        self.keys = keys

    @classmethod
    def load_or_create(cls, path: Path) -> Sealer:
        """Read the key file, creating it (0600) with a fresh key on first use.

        Raises:
            StoreError: if the file cannot be read, written or parsed.
        """
        try:
            if not path.exists():
                write_private(path, _line(AESGCM.generate_key(bit_length=256)))
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot use the secret key file {path}: {exc}") from None
        try:
            keys = [base64.b64decode(line, validate=True) for line in text.split()]
        except binascii.Error:
            raise StoreError(f"{path} is not an assist secret key file") from None
        if any(len(k) != 32 for k in keys):
            raise StoreError(f"{path} is not an assist secret key file")
        return cls(path, keys)

    def seal(self, secret: str, owner: str) -> str:
        """Seal ``secret`` for ``owner`` (the user name binds it to their row)."""
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, secret.encode(), _aad(owner))
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, value: str, owner: str) -> str:
        """The secret in ``value`` (a plain legacy value is returned as it is).

        Raises:
            StoreError: if no key of the file opens it (another broker's key, or
                a value moved from another user's row).
        """
        if not is_sealed(value):
            return value
        try:
            raw = base64.b64decode(value[len(PREFIX):], validate=True)
        except binascii.Error:
            raise StoreError(f"the sealed secret of {owner} is damaged") from None
        nonce, sealed = raw[:_NONCE], raw[_NONCE:]
        for key in self.keys:
            try:
                return AESGCM(key).decrypt(nonce, sealed, _aad(owner)).decode()
            except InvalidTag:
                continue
        raise StoreError(f"the secret of {owner} was sealed with another key than "
                         f"{self.path}'s; copy that broker's key file, or enrol again")

    def begin_rotation(self) -> Sealer:
        """Put a new key in front of the file (the old ones still open); return the sealer."""
        keys = [AESGCM.generate_key(bit_length=256), *self.keys]
        self._write(keys)
        return Sealer(self.path, keys)

    def finish_rotation(self) -> None:
        """Every value is sealed with the newest key: drop the others from the file."""
        self._write(self.keys[:1])
        self.keys = self.keys[:1]

    def _write(self, keys: list[bytes]) -> None:
        try:
            write_private(self.path, b"".join(_line(k) for k in keys))
        except OSError as exc:
            raise StoreError(f"cannot write the secret key file {self.path}: "
                             f"{exc.strerror}") from None


def _line(key: bytes) -> bytes:
    return base64.b64encode(key) + b"\n"


def _aad(owner: str) -> bytes:
    return b"assist totp secret of " + owner.encode()
