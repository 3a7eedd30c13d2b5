"""The protocol's words, checked once where a person or a file gives them.

The allowed values of a word (a permission scope, a verification method, an
annotation kind, an agent's availability) are the ``Literal`` aliases of
:mod:`assist.protocol.messages`; nothing lists them again by hand::

    scope = one_of(SCOPES, "control", "unknown permission")   # typed as m.Scope
    one_of(SCOPES, "everything", "unknown permission")
    # ConfigError: unknown permission: use annotate, control, run or mic, not 'everything'

Pure: no I/O.
"""

from __future__ import annotations

from typing import TypeVar, get_args

from assist.errors import ConfigError
from assist.protocol import messages as m

T = TypeVar("T", bound=str)


SCOPES: tuple[m.Scope, ...] = get_args(m.Scope)
VERIFY_METHODS: tuple[m.VerifyMethod, ...] = get_args(m.VerifyMethod)
ANNOTATION_KINDS: tuple[m.AnnotationKind, ...] = get_args(m.AnnotationKind)
AVAILABILITY: tuple[m.Availability, ...] = get_args(m.Availability)


def spoken(values: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def one_of(allowed: tuple[T, ...], value: object, what: str, where: str = "") -> T:
    """Return ``value`` as one of ``allowed`` (typed as that vocabulary).

    Args:
        allowed: the vocabulary, e.g. :data:`SCOPES`.
        value: what was given (a command-line argument, a YAML value).
        what: the word in the message, e.g. ``"unknown permission"``.
        where: where the value came from (a file and step), if anywhere.

    Raises:
        ConfigError: naming the allowed values.
    """
    for word in allowed:
        if word == value:
            return word
    given = "" if value is None else f", not {value!r}"
    prefix = f"{where}: " if where else ""
    raise ConfigError(f"{prefix}{what}: use {spoken(allowed)}{given}")
