"""The dependency direction of DESIGN.md, enforced for every package.

protocol <- core <- store/transport <- share/media <- broker/client <- cli/tui.
Only tui/ imports textual; only transport/ and broker/ import asyncssh; only
media/ imports aiortc, av and aioice (the WebRTC stack); nothing imports cli/
(the command line sits on top). A fresh interpreter that imports the headless
core loads none of the heavy libraries.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "assist"

ALLOWED_LIBS = {
    "textual": {"tui"},
    "asyncssh": {"transport", "broker"},
    "aiortc": {"media"},
    "av": {"media"},
    "aioice": {"media"},
}
BASE = {"errors", "files"}
LAYERS: dict[str, set[str]] = {
    "errors": set(),
    "files": set(),
    "log": set(),
    "config": BASE,
    "display": BASE | {"core"},
    "protocol": {"errors"},
    "core": BASE | {"protocol"},
    "store": BASE | {"protocol", "core"},
    "transport": BASE | {"protocol", "core"},
    "share": BASE | {"protocol", "core"},
    "media": BASE | {"protocol", "core", "config", "share"},
    "broker": BASE | {"protocol", "core", "config", "log", "store", "transport"},
    "client": BASE | {"protocol", "core", "config", "store", "transport", "share", "media"},
    "tui": BASE | {"protocol", "core", "config", "share", "media", "client", "display"},
    "cli": BASE | {"protocol", "core", "config", "display", "log", "store", "transport",
                   "share", "media", "broker", "client", "tui"},
    "__main__": {"launch"},
    "launch": {"cli"},
    "__init__": set(),
}
"""Which assist packages each package may import (besides itself)."""


def imports(source: str) -> set[str]:
    """Every module ``source`` imports, by its full name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def wrong_imports(layer: str, source: str) -> list[str]:
    """The imports of a module of ``layer`` that break the direction."""
    bad = []
    for name in sorted(imports(source)):
        parts = name.split(".")
        if parts[0] == "assist" and len(parts) > 1:
            target = parts[1] if parts[1] in LAYERS else "__init__"  # `from assist import x`
            if target not in (layer, "__init__") and target not in LAYERS[layer]:
                bad.append(f"{layer} imports {name}")
        elif parts[0] in ALLOWED_LIBS and layer not in ALLOWED_LIBS[parts[0]]:
            bad.append(f"{layer} imports {name}")
    return bad


def test_every_package_has_a_place() -> None:
    assert {layer_of(p) for p in PACKAGE.rglob("*.py")} <= set(LAYERS)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_package_imports_only_what_is_below_it(layer: str) -> None:
    offenders = [f"{path.relative_to(PACKAGE)}: {bad}"
                 for path in PACKAGE.rglob("*.py") if layer_of(path) == layer
                 for bad in wrong_imports(layer, path.read_text())]
    assert offenders == []


@pytest.mark.parametrize(("layer", "source"), [
    ("core", "import textual\n"),
    ("protocol", "from assist.core import queue\n"),
    ("client", "from assist.cli.app import app\n"),
    ("broker", "from assist.tui.terminal import TerminalView\n"),
    ("share", "import asyncssh\n"),
    ("tui", "from aiortc import RTCPeerConnection\n"),
    ("store", "from assist import broker\n"),
])
def test_a_wrong_import_is_caught(layer: str, source: str) -> None:
    assert wrong_imports(layer, source) != []


@pytest.mark.parametrize(("modules", "absent"), [
    ("assist.protocol, assist.core.session, assist.core.queue, assist.core.queueview, "
     "assist.core.grants, assist.core.budget, assist.core.clock, assist.core.pubkey",
     ("textual", "asyncssh", "aiortc", "av", "aioice", "sqlite3")),
    ("assist.store, assist.transport.channel, assist.transport.memory",
     ("textual", "asyncssh", "aiortc", "av", "aioice")),
    ("assist.client.helpflow, assist.client.agent, assist.client.desktop",
     ("textual", "aiortc", "av", "aioice")),
    ("assist.broker.server", ("textual", "aiortc", "av", "aioice")),
])
def test_headless_parts_load_without_ui_or_media_libraries(modules: str,
                                                           absent: tuple[str, ...]) -> None:
    code = (f"import sys, {modules}\n"
            f"print(','.join(m for m in {absent!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""
