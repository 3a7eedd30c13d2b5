"""Write ``man/assist.1`` from the command line itself, so the two never drift apart.

::

    python -m assist.cli.manpage > man/assist.1

A test regenerates the page and compares it with the committed one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer

from assist import __version__
from assist.cli import app

HEADER = """.TH ASSIST 1 "" "assist {version}" "User Commands"
.SH NAME
assist \\- live remote help for terminals
.SH SYNOPSIS
.B assist
.I COMMAND
.RI [ OPTIONS ]
.SH DESCRIPTION
A person in trouble runs
.BR "assist help" ;
a helpdesk agent working from
.B assist console
joins them within seconds through the
.B assist serve
broker, sees their terminal (and with
.B \\-\\-screen
their desktop), chats, draws on their screen and, only with their explicit and
revocable permission, types for them. The broker keeps the queue, a
hash-chained audit log and session recordings; every console action is also a
command for scripts.
"""

FOOTER = r""".SH FILES
.TP
.I broker.toml
Broker settings in the platform config directory (host, port, db, host_key,
name, allow_unregistered_users, resume_grace, offer_timeout, ice_servers,
record, recordings, require_verification).
.TP
.I client.toml
Client settings: [broker] host, port, host_key (the pinned broker key), key,
redact (regular expressions masked before output leaves the machine).
.SH ENVIRONMENT
.TP
.B ASSIST_CONFIG_DIR, ASSIST_DATA_DIR, ASSIST_STATE_DIR
Where configuration, the broker's store and client state live.
.TP
.B ASSIST_BROKER, ASSIST_KEY
Broker address (host:port) and SSH private key of the client commands.
.TP
.B ASSIST_BROKER_*
Any broker.toml setting, e.g. ASSIST_BROKER_PORT.
.SH EXAMPLES
.TP
.B assist demo
Broker, a scripted user and the agent console on this machine.
.TP
.B assist serve
Run the helpdesk broker on 127.0.0.1:2222.
.TP
.B assist help """ + '"printer jam"' + r"""
Ask for help; the shell stays usable while waiting.
.TP
.B assist report \-\-since 7d \-\-html week.html
A week of helpdesk figures as a page with charts.
.SH EXIT STATUS
0 on success, 1 when assist reports an error (the message says what to do),
2 for a command-line mistake, 70 for an internal error.
.SH SEE ALSO
.BR ssh (1),
.BR tmux (1),
.BR asciinema (1)
"""


def _escape(text: str) -> str:
    """Escape text for roff: backslashes, leading dots and quotes, hyphens."""
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.splitlines())


_MARKUP = re.compile(r"\[/?(?:b|i|bold|dim|italic|underline|red|green|yellow|cyan|magenta)"
                     r"(?: [a-z]+)*\]|\[/\]")
"""Rich markup tags (not the ``[default]`` notes that help texts end with)."""


def _plain(text: str | None) -> str:
    """Help text without Rich markup and with paragraphs joined."""
    text = _MARKUP.sub("", text or "")
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return "\n.PP\n".join(_escape(p) for p in paragraphs if p)


# Typer bundles its own click, so commands and parameters are read by duck typing.


def _commands(group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield path, command


def _option(param: Any) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name).upper()
        return f".TP\n.I {name}\n{_plain(getattr(param, 'help', ''))}"
    names = ", ".join(_escape(o) for o in [*param.opts, *param.secondary_opts])
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    name = {"str": "TEXT", "Path": "FILE", "int": "N", "float": "N"}.get(
        getattr(kind, "__name__", ""), "VALUE")
    metavar = "" if param.is_flag or param.count else f" {param.metavar or name}"
    return f".TP\n.B {names}{metavar}\n{_plain(param.help) or '.'}"


def render() -> str:
    """The whole man page."""
    root = typer.main.get_command(app)
    parts = [HEADER.format(version=__version__), ".SH COMMANDS"]
    for path, command in _commands(root, "assist"):
        parts.append(f".SS {_escape(path)}")
        usage = " ".join(command.collect_usage_pieces(command.context_class(command)))
        parts.append(f".B {_escape(path)}\n{_escape(usage)}\n.PP\n{_plain(command.help)}")
        params = [p for p in command.params if p.name != "help"]
        parts.extend(_option(p) for p in params)
    parts.append(FOOTER)
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
