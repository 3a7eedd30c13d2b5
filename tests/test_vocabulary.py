"""The protocol's words, checked once against its own ``Literal`` types (pure)."""

from __future__ import annotations

from typing import get_args

import pytest

from assist.errors import ConfigError
from assist.protocol import messages as m
from assist.protocol.vocabulary import (
    ANNOTATION_KINDS,
    AVAILABILITY,
    SCOPES,
    VERIFY_METHODS,
    one_of,
    spoken,
)


def test_the_vocabularies_are_the_protocols_own() -> None:
    assert SCOPES == get_args(m.Scope) == ("annotate", "control", "run", "mic")
    assert VERIFY_METHODS == ("key", "totp", "attest")
    assert ANNOTATION_KINDS == get_args(m.AnnotationKind) == ("box", "arrow", "highlight",
                                                              "label")
    assert AVAILABILITY == ("available", "away")


def test_one_of_returns_the_word_or_names_the_allowed_ones() -> None:
    assert one_of(SCOPES, "run", "unknown permission") == "run"
    with pytest.raises(ConfigError) as bad:
        one_of(SCOPES, "everything", "unknown permission")
    assert bad.value.message == ("unknown permission: use annotate, control, run or mic, "
                                 "not 'everything'")
    with pytest.raises(ConfigError, match=r"^book step 2: ask needs a scope: use annotate"):
        one_of(SCOPES, None, "ask needs a scope", "book step 2")
    with pytest.raises(ConfigError, match="not 5"):
        one_of(VERIFY_METHODS, 5, "unknown method")
    assert spoken(("key",)) == "key" and spoken(("a", "b")) == "a or b"
