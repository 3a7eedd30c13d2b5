"""The dependency direction of DESIGN.md, enforced.

protocol <- core <- store/transport <- broker/share/media/client <- cli/tui.
Only tui/ imports textual; only transport/ and broker/ import asyncssh; only
media/ imports aiortc, av and aioice (the WebRTC stack). The headless core never
even loads them.
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
# Which assist layers each layer may import.
LAYERS = {
    "protocol": {"protocol", "errors"},
    "core": {"protocol", "core", "errors"},
    "store": {"protocol", "core", "store", "errors"},
    "transport": {"protocol", "core", "transport", "errors"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(PACKAGE).parts[0] if len(p.relative_to(PACKAGE).parts) > 1
             else p.stem, p) for p in PACKAGE.rglob("*.py")]


@pytest.mark.parametrize("lib", sorted(ALLOWED_LIBS))
def test_heavy_libraries_stay_in_their_layer(lib: str) -> None:
    offenders = [str(path.relative_to(PACKAGE)) for layer, path in _modules()
                 if layer not in ALLOWED_LIBS[lib]
                 and any(name.split(".")[0] == lib for name in _imports(path))]
    assert offenders == []


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_lower_layers_do_not_import_upper_ones(layer: str) -> None:
    offenders = []
    for owner, path in _modules():
        if owner != layer:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "assist" and len(parts) > 1 and parts[1] not in LAYERS[layer]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert offenders == []


def test_core_loads_without_network_or_ui_libraries() -> None:
    code = (
        "import sys, assist.protocol, assist.core.session, assist.core.queue, "
        "assist.core.pubkey\n"
        "bad = [m for m in ('textual', 'asyncssh', 'aiortc', 'av', 'aioice', 'sqlite3')\n"
        "       if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""
