"""Textual snapshots at 80x24 and 60x20 of every dialog, of ``assist help`` waiting and of
``assist console`` at its queue: a change in how they look is seen.

The pictures live in ``tests/__snapshots__``; after a wanted change, run
``pytest tests/test_snapshots.py --snapshot-update`` and look at the report.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.screen import Screen

from assist.broker.server import Broker
from assist.config import ClientConfig
from tests.helpers import KeyPair, broker_config, make_key, register, until
from tests.test_dialogs import DIALOGS, Host


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
@pytest.mark.parametrize(("name", "make"), [(d[0], d[1]) for d in DIALOGS],
                         ids=[d[0] for d in DIALOGS])
def test_every_dialog_looks_as_before(snap_compare: Any, name: str,
                                      make: Callable[[], Screen[object]],
                                      size: tuple[int, int]) -> None:
    assert snap_compare(Host(make), terminal_size=size)


class ThreadBroker:
    """A real broker on 127.0.0.1 in a thread of its own (the snapshot fixture runs the
    app on its own loop), on a fixed clock so that every wait shown is the same."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ready = threading.Event()
        self.port = 0
        self.public_key = ""
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.keys: dict[str, KeyPair] = {}
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        broker = Broker(broker_config(self.root / "broker"), clock=lambda: NOW)
        await broker.start()
        for role, name in (("user", "alice"), ("agent", "carol")):
            self.keys[name] = make_key(self.root / "keys", name)
            register(broker, role, name, self.keys[name])
        self.port, self.public_key = broker.port, broker.public_key
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self.ready.set()
        await self._stop.wait()
        await broker.stop()

    def __enter__(self) -> ThreadBroker:
        self.thread.start()
        assert self.ready.wait(20), "the broker did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def config(self, name: str) -> ClientConfig:
        return ClientConfig(host="127.0.0.1", port=self.port, host_key=self.public_key,
                            voice=False, audio=(),
                            key=self.keys[name].private, file=self.root / f"{name}.toml",
                            state=self.root / f"{name}-state", os_user=name,
                            hostname="snapshot")


NOW = 1_800_000_000.0
"""The time the broker and the apps see: waits shown are always 0:00."""


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    from assist.tui import console_app, help_app

    clock = types.SimpleNamespace(time=lambda: NOW, monotonic=time.monotonic,
                                  perf_counter=time.perf_counter, strftime=time.strftime,
                                  localtime=time.localtime)
    monkeypatch.setattr(help_app, "time", clock)
    monkeypatch.setattr(console_app, "time", clock)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_the_help_app_waiting_looks_as_before(snap_compare: Any, frozen: None, tmp_path: Path,
                                              size: tuple[int, int]) -> None:
    from assist.tui.help_app import HelpApp

    with ThreadBroker(tmp_path) as broker:
        app = HelpApp(broker.config("alice"), "printer jam",
                      ["sh", "-c", "printf 'the printer says: PC LOAD LETTER\\n'; sleep 60"])

        async def queued(pilot: Any) -> None:
            await until(lambda: app.request is not None
                        and app.request.status.phase == "queued", 20)
            await until(lambda: any("PC LOAD" in line for line in app.emulator.text()), 20)
            await pilot.pause(0.3)

        assert snap_compare(app, terminal_size=size, run_before=queued)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
def test_the_console_looks_as_before(snap_compare: Any, frozen: None, tmp_path: Path,
                                     size: tuple[int, int]) -> None:
    from assist.tui.console_app import ConsoleApp

    with ThreadBroker(tmp_path) as broker:
        app = ConsoleApp(broker.config("carol"))

        async def connected(pilot: Any) -> None:
            await until(lambda: app.client is not None and app.broker_name != "", 20)
            await pilot.pause(1.2)  # a tick draws the status line

        assert snap_compare(app, terminal_size=size, run_before=connected)
