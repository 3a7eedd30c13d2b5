"""``assist doctor``: what on this machine others could read that they must not.

Checks the files assist keeps secret, the broker's (store, its journal,
host key, the key that seals TOTP secrets, recordings) and the client's
(resume tokens, the key it logs in with), and says how to fix each one.
"""

from __future__ import annotations

import stat
from pathlib import Path

import typer
from rich.table import Table

from assist.cli.app import JSON_OPTION, app, out, print_json
from assist.config import BrokerConfig, ClientConfig
from assist.files import loose
from assist.store.engine import is_url, sqlite_path


def private_paths(broker: BrokerConfig, client: ClientConfig) -> list[Path]:
    """Every file and folder assist keeps private, as configured here."""
    paths = [broker.host_key_path, broker.secret_key_file, broker.recordings,
             client.state / "resume.json"]
    if not is_url(broker.db):  # PostgreSQL keeps its files itself
        db = Path(sqlite_path(broker.db))
        paths = [db.parent, db, Path(f"{db}-wal"), Path(f"{db}-shm"), *paths]
    if broker.recordings.is_dir():
        paths += sorted(broker.recordings.glob("*.cast"))
    if client.key is not None:
        paths.append(client.key)
    return paths


def loose_files(broker: BrokerConfig, client: ClientConfig) -> list[tuple[Path, int]]:
    """Private files that other accounts may read, with their modes."""
    return loose(private_paths(broker, client))


def fix_for(path: Path) -> str:
    """The command that makes ``path`` private."""
    return f"chmod {'700' if path.is_dir() else '600'} {path}"


@app.command("doctor")
def doctor(as_json: bool = JSON_OPTION) -> None:
    """Check that what assist keeps secret on this machine is private to its owner."""
    found = loose_files(BrokerConfig.load(), ClientConfig.load())
    if as_json:
        print_json({"ok": not found,
                    "loose": [{"path": str(p), "mode": oct(mode), "fix": fix_for(p)}
                              for p, mode in found]})
    elif not found:
        out.print("[green]private files are private[/]: nobody else can read them")
    else:
        table = Table(title="Readable by other accounts on this machine")
        for column in ("file", "mode", "fix"):
            table.add_column(column)
        for path, mode in found:
            table.add_row(str(path), stat.filemode(mode | (stat.S_IFDIR if path.is_dir()
                                                             else stat.S_IFREG)), fix_for(path))
        out.print(table)
    if found:
        raise typer.Exit(1)
