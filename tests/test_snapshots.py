"""Textual snapshots of every dialog at 80x24 and 60x20: a change in how they look is seen.

The pictures live in ``tests/__snapshots__``; after a wanted change, run
``pytest tests/test_snapshots.py --snapshot-update`` and look at the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.screen import Screen

from tests.test_dialogs import DIALOGS, Host


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
@pytest.mark.parametrize(("name", "make"), [(d[0], d[1]) for d in DIALOGS],
                         ids=[d[0] for d in DIALOGS])
def test_every_dialog_looks_as_before(snap_compare: Any, name: str,
                                      make: Callable[[], Screen[object]],
                                      size: tuple[int, int]) -> None:
    assert snap_compare(Host(make), terminal_size=size)
