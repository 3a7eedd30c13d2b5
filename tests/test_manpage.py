"""man/assist.1 is kept in step with the command line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from assist.cli import app
from assist.cli.manpage import _commands, render

PAGE = Path(__file__).parent.parent / "man" / "assist.1"


def test_the_man_page_matches_the_command_line() -> None:
    assert PAGE.read_text() == render(), (
        "man/assist.1 is out of date: run python -m assist.cli.manpage > man/assist.1")


def test_every_command_and_option_is_in_the_page() -> None:
    page = PAGE.read_text()
    paths = list(_commands(typer.main.get_command(app), "assist"))
    assert len(paths) > 25
    for path, command in paths:
        assert f".SS {path.replace('-', chr(92) + '-')}" in page
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert opt.replace("-", "\\-") in page, (path, opt)


@pytest.mark.skipif(shutil.which("man") is None or shutil.which("groff") is None,
                    reason="man/groff not installed")
def test_the_page_renders_without_warnings() -> None:
    result = subprocess.run(["man", "--warnings", "-l", str(PAGE)], capture_output=True,
                            text=True, env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"},
                            check=False)
    assert result.returncode == 0 and "assist agent run" in result.stdout
    assert result.stderr == "", result.stderr
