"""Admin commands on the broker's store: ``assist users``, ``assist agents``, ``assist audit``."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Literal

import pyotp
import segno
import typer
from rich.table import Table

from assist.cli.app import DB_OPTION, JSON_OPTION, app, err, out, print_json
from assist.cli.doctor import fix_for, loose_files
from assist.config import BrokerConfig, ClientConfig
from assist.core import pubkey
from assist.display import said
from assist.store import Store
from assist.store.directory import Person
from assist.store.engine import existing


def open_store(db: str | None, create: bool = False) -> Store:
    """Open the broker store named by ``--db`` or the broker config, with its secret key.

    Only ``create`` (registering someone before the broker's first start) makes a
    new store; elsewhere a store that is not there is an error.
    """
    config = BrokerConfig.load(db=db)
    return Store(config.db if create else existing(config.db), config.secret_key_file)


def _person_json(person: Person) -> dict[str, object]:
    return {
        "name": person.name,
        "role": person.role,
        "created": person.created,
        "totp": person.totp,
        "keys": [{"fingerprint": k.fingerprint, "type": k.kind, "comment": k.comment}
                 for k in person.keys],
    }


def _directory_app(role: Literal["user", "agent"]) -> typer.Typer:
    """Build the ``users`` or ``agents`` command group (they differ only in role)."""
    plural = f"{role}s"
    article = "an" if role[0] in "aeiou" else "a"
    group = typer.Typer(help=f"Manage the {plural} the broker knows and their SSH keys.",
                        no_args_is_help=True)

    @group.command("add")
    def add(
        name: str = typer.Argument(..., help=f"The {role}'s name."),
        key: Path | None = typer.Option(None, "--key", "-k",
                                         help="Their OpenSSH public key file (.pub)."),
        db: str | None = DB_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Register a user or an agent with their public key."""
        parsed = pubkey.load(key) if key is not None else None
        with open_store(db, create=True) as store:
            person = store.directory.add(role, name, parsed, time.time())
            store.audit.append(time.time(), "admin", f"{role}-add", None,
                               {"name": name, "key": parsed.fingerprint if parsed else None})
        if as_json:
            print_json(_person_json(person))
        else:
            what = f" with key {parsed.fingerprint}" if parsed else " (no key yet)"
            out.print(f"added {role} [bold]{name}[/]{what}")

    add.__doc__ = f"Register {article} {role}, optionally with their SSH public key."

    @group.command("add-key")
    def add_key(
        name: str = typer.Argument(..., help=f"The {role}'s name."),
        key: Path = typer.Option(..., "--key", "-k", help="OpenSSH public key file (.pub)."),
        db: str | None = DB_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        parsed = pubkey.load(key)
        with open_store(db) as store:
            store.directory.add_key(role, name, parsed, time.time())
            store.audit.append(time.time(), "admin", f"{role}-add-key", None,
                               {"name": name, "key": parsed.fingerprint})
            person = store.directory.get(role, name)
        if as_json:
            print_json(_person_json(person))
        else:
            out.print(f"added key {parsed.fingerprint} to {role} [bold]{name}[/]")

    add_key.__doc__ = f"Register one more SSH public key for {article} {role}."

    @group.command("list")
    def list_(db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
        with open_store(db) as store:
            people = store.directory.list(role)
        if as_json:
            print_json([_person_json(p) for p in people])
            return
        if not people:
            out.print(f"no {plural} yet: add one with `assist {plural} add NAME --key FILE.pub`")
            return
        table = Table(title=plural.capitalize())
        table.add_column("name", style="bold")
        table.add_column("keys")
        if role == "user":
            table.add_column("TOTP")
        for p in people:
            keys = "\n".join(f"{k.fingerprint} {k.kind}" for k in p.keys) or "-"
            table.add_row(p.name, keys, *(["yes" if p.totp else "-"] if role == "user" else []))
        out.print(table)

    list_.__doc__ = f"List {plural} and their key fingerprints."

    @group.command("remove")
    def remove(
        name: str = typer.Argument(..., help=f"The {role}'s name."),
        db: str | None = DB_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        with open_store(db) as store:
            store.directory.remove(role, name)
            store.audit.append(time.time(), "admin", f"{role}-remove", None, {"name": name})
        if as_json:
            print_json({"removed": name, "role": role})
        else:
            out.print(f"removed {role} [bold]{name}[/] and their keys")

    remove.__doc__ = f"Remove {article} {role} and all their keys."
    return group


users_app = _directory_app("user")
app.add_typer(users_app, name="users")


@users_app.command("enrol-totp")
def enrol_totp(
    name: str = typer.Argument(..., help="The user's name."),
    issuer: str = typer.Option("assist helpdesk", "--issuer",
                               help="Name the authenticator app shows."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Enrol a user for TOTP codes: prints the provisioning URI and a QR code to scan.

    Agents can then verify the user by asking for the code of their
    authenticator app. Enrolling again replaces the old secret.
    """
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=issuer)
    with open_store(db) as store:
        store.directory.get("user", name)
        store.directory.set_totp(name, secret)
        # The secret itself never goes into the audit log.
        store.audit.append(time.time(), "admin", "totp-enrol", None, {"name": name})
    if as_json:
        print_json({"name": name, "uri": uri, "secret": secret})
        return
    out.print(f"Scan this with the authenticator app of [bold]{name}[/] "
              "(or enter the secret by hand):")
    qr = io.StringIO()
    segno.make(uri, error="m").terminal(out=qr, compact=True)
    out.print(qr.getvalue(), markup=False, highlight=False, end="")
    out.print(f"secret: {secret}\nuri:    {uri}", markup=False)


@users_app.command("remove-totp")
def remove_totp(
    name: str = typer.Argument(..., help="The user's name."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove a user's TOTP enrolment."""
    with open_store(db) as store:
        store.directory.set_totp(name, None)
        store.audit.append(time.time(), "admin", "totp-remove", None, {"name": name})
    if as_json:
        print_json({"name": name, "totp": False})
    else:
        out.print(f"removed the TOTP enrolment of [bold]{name}[/]")
app.add_typer(_directory_app("agent"), name="agents")

audit_app = typer.Typer(help="Inspect and verify the tamper-evident audit log.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Check the audit hash chain; exit 1 naming the first bad record.

    Files of the store that other accounts could read are named too.
    """
    config = BrokerConfig.load(db=db)
    with open_store(db) as store:
        result = store.audit.verify()
    found = loose_files(config, ClientConfig.load())
    if as_json:
        print_json({"ok": True, "records": result.records, "head": result.head,
                    "loose": [{"path": str(p), "mode": oct(mode)} for p, mode in found]})
        return
    out.print(f"[green]audit log intact[/]: {result.records} records, head {result.head[:16]}")
    for path, mode in found:
        err.print(f"[yellow]warning:[/] {path} is readable by other accounts "
                  f"({oct(mode)}): {fix_for(path)}")


store_app = typer.Typer(help="The broker's store itself: its secret key, moving it.",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("rotate-key")
def rotate_key(db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Seal every TOTP secret with a new key and drop the old one.

    Safe to interrupt: until it finishes, the key file holds both keys. Stop
    the broker first, or restart it afterwards (it reads the key at start).
    """
    with open_store(db) as store:
        assert store.sealer is not None
        sealer = store.sealer.begin_rotation()
        count = store.directory.reseal(sealer)
        sealer.finish_rotation()
        store.audit.append(time.time(), "admin", "rotate-secret-key", None, {"secrets": count})
    if as_json:
        print_json({"rotated": True, "secrets": count, "key": str(sealer.path)})
    else:
        out.print(f"sealed {count} TOTP secret{'s' if count != 1 else ''} with a new key in "
                  f"{sealer.path}; restart the broker to use it")


@audit_app.command("show")
def audit_show(
    session: str | None = typer.Option(None, "--session", help="Only this session's records."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List audit records, oldest first."""
    with open_store(db) as store:
        records = store.audit.records(session)
    if as_json:
        print_json([r.__dict__ for r in records])
        return
    table = Table(title="Audit log")
    for column in ("seq", "time", "actor", "action", "session", "data"):
        table.add_column(column)
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.at))
        table.add_row(str(r.seq), when, said(r.actor), said(r.action), said(r.session or ""),
                      said(str(r.data or "")))
    out.print(table)


@store_app.command("copy")
def store_copy(
    source: str = typer.Option(..., "--from", metavar="PATH|URL",
                               help="The store to copy: sqlite:PATH, a file, or a "
                               "postgresql:// URL."),
    target: str = typer.Option(..., "--to", metavar="PATH|URL",
                               help="An empty store to copy into (made if it is a new "
                               "SQLite file; a PostgreSQL database must exist)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Move a whole helpdesk to another store, audit chain intact.

    Stop the broker first. Everything is copied in one transaction and the
    audit chain is verified on the target before it is kept. Bring the
    broker's secret key file (it opens the sealed TOTP secrets) and the
    recordings folder along, then start the brokers with --db TARGET.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from assist.store.copy import TABLES, copy_store, describe

    with Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=as_json) as bar:
        tasks = {table: bar.add_task(table, total=None) for table, _key in TABLES}

        def step(table: str, done: int, total: int) -> None:
            bar.update(tasks[table], completed=done, total=total)

        copied = copy_store(source, target, step)
    if as_json:
        print_json({"copied": True, **describe(copied)})
        return
    rows = ", ".join(f"{n} {t}" for t, n in copied.rows.items() if t != "meta")
    out.print(f"copied {rows}\n[green]audit log intact[/] on the target: "
              f"{copied.audit_records} records, head {copied.audit_head[:16]}")
