"""The grant rules, pure: grant, check, expire, revoke, policy."""

from __future__ import annotations

import pytest

from assist.core.grants import (
    EXPLAIN,
    KEY_SCOPES,
    GrantRefused,
    GrantTable,
    check_keys,
    check_policy,
)
from assist.errors import StateError

T = 1000.0


def reason(call: object) -> str:
    with pytest.raises(GrantRefused) as info:
        call()  # type: ignore[operator]
    return info.value.reason


def test_a_grant_covers_its_scope_only() -> None:
    table = GrantTable()
    table.grant("g1", "annotate", "carol", T)
    assert table.check("g1", "annotate", T + 1).agent == "carol"
    assert reason(lambda: table.check("g1", "control", T + 1)) == "wrong-scope"
    assert reason(lambda: table.check("nope", "annotate", T)) == "no-grant"


def test_time_boxed_grants_expire_and_say_so() -> None:
    table = GrantTable()
    granted = table.grant("g1", "control", "carol", T, seconds=60)
    assert granted.expires_at == T + 60 and granted.remaining(T + 15) == 45
    table.check("g1", "control", T + 59.9)
    assert reason(lambda: table.check("g1", "control", T + 60)) == "expired"
    # Once expired it stays expired (never live again), and is reported as such.
    assert reason(lambda: table.check("g1", "control", T)) == "expired"
    assert table.live(T) == []


def test_until_revoked_grants_have_no_expiry() -> None:
    table = GrantTable()
    granted = table.grant("g1", "control", "carol", T)
    assert granted.expires_at is None and granted.remaining(T + 1e6) is None
    table.check("g1", "control", T + 1e6)


def test_revoke_all_and_revoke_some() -> None:
    table = GrantTable()
    table.grant("a", "annotate", "carol", T)
    table.grant("c", "control", "carol", T)
    table.grant("r", "run", "carol", T)
    assert [g.id for g in table.revoke(("c",))] == ["c"]
    assert reason(lambda: table.check("c", "control", T)) == "revoked"
    assert sorted(g.id for g in table.revoke()) == ["a", "r"]
    assert table.live(T) == []
    assert table.revoke() == []  # nothing left: revoking again is harmless


def test_ids_are_never_reused_and_scopes_are_known() -> None:
    table = GrantTable()
    table.grant("g1", "control", "carol", T)
    table.revoke()
    with pytest.raises(StateError, match="already used"):
        table.grant("g1", "control", "carol", T)
    with pytest.raises(StateError, match="unknown permission"):
        table.grant("g2", "root", "carol", T)  # type: ignore[arg-type]


def test_newest_names_the_grant_that_explains_a_refusal() -> None:
    table = GrantTable()
    assert table.newest(KEY_SCOPES) == ""
    table.grant("old", "control", "carol", T, seconds=10)
    table.grant("new", "run", "carol", T)
    assert table.newest(KEY_SCOPES) == "new"
    table.revoke(("new",))
    assert table.newest(KEY_SCOPES) == "old"
    table.live(T + 20)  # "old" expires
    # None live: the newest one anyway, so checking it says "revoked", not "no grant".
    assert table.newest(KEY_SCOPES) == "new"
    assert reason(lambda: check_keys(table, "new", T + 20)) == "revoked"
    assert table.current("control", T + 20) is None


def test_keystrokes_need_control_or_run() -> None:
    table = GrantTable()
    table.grant("a", "annotate", "carol", T)
    table.grant("r", "run", "carol", T)
    assert check_keys(table, "r", T).scope == "run"
    assert reason(lambda: check_keys(table, "a", T)) == "wrong-scope"


@pytest.mark.parametrize(("scope", "verified", "required", "refused"), [
    ("control", False, True, True),
    ("run", False, True, True),
    ("annotate", False, True, False),
    ("control", True, True, False),
    ("control", False, False, False),
])
def test_policy_no_control_before_verification(scope: str, verified: bool, required: bool,
                                               refused: bool) -> None:
    if refused:
        assert reason(lambda: check_policy(scope, verified, required)) == "not-verified"
    else:
        check_policy(scope, verified, required)


def test_every_reason_is_explained() -> None:
    import typing

    from assist.core.grants import Reason

    assert set(typing.get_args(Reason)) == set(EXPLAIN)
