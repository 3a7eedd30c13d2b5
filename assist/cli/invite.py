"""Invites from the command line: ``assist invite``, ``assist agent invite``, ``help --join``.

An invite is the one line a helpdesk sends a new user: with it, ``assist
help --join LINE`` makes the user a key if they have none, registers it,
pins the broker and queues them. An admin makes invites on the broker's
machine (``assist invite``, straight into the store); an agent through the
broker (``assist agent invite``).
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time
from pathlib import Path

import segno
import typer

from assist.broker.enrolment import check_terms, make_invite
from assist.cli.admin import open_store
from assist.cli.agent import agent_app
from assist.cli.app import DB_OPTION, JSON_OPTION, VERBOSE_OPTION, app, err, out, print_json
from assist.cli.connect import BROKER_OPTION, KEY_OPTION, YES_OPTION, client_config, trust_prompt
from assist.client.agent import AgentClient
from assist.client.join import Invitation, enrol, join_command
from assist.config import BrokerConfig, ClientConfig, Paths, format_address, parse_address
from assist.display import said
from assist.errors import ConfigError
from assist.log import setup
from assist.protocol.invites import MAX_INVITE_SECONDS, MAX_USES
from assist.transport import ssh

USES_OPTION = typer.Option(1, "--uses", min=1, max=MAX_USES,
                           help="How many keys the invite may enrol (one person: 1).")
EXPIRES_OPTION = typer.Option("1h", "--expires",
                              help="How long it works: 90s, 30m, 1h, 2d (at most 30d).")
NAME_OPTION = typer.Option("", "--name",
                           help="The user it enrols (default: their OS account name). An "
                                "existing user gets one more key (a new machine).")
QR_OPTION = typer.Option(False, "--qr", help="Print the join string as a QR code too.")
ADDRESS_OPTION = typer.Option(
    None, "--address",
    help="host:port users reach the broker at, comma-separated for several nodes "
         "(default: the broker's own address).")
HOST_KEY_OPTION = typer.Option(
    None, "--host-key", help="The broker's host key file, as given to assist serve "
    "(default: the one of broker.toml, else in the platform data dir); its fingerprint "
    "goes into the invite.")
CONFIG_OPTION = typer.Option(None, "--config", help="The broker's broker.toml to read.")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_expiry(text: str) -> float:
    """Seconds from ``90s``, ``30m``, ``1h``, ``2d`` or a plain number of seconds.

    Raises:
        ConfigError: for another form, or more than 30 days.
    """
    found = _DURATION.match(text.lower())
    if found is None:
        raise ConfigError(f"--expires {text!r}: give a duration such as 90s, 30m, 1h or 2d")
    seconds = float(found.group(1)) * _UNIT[found.group(2)]
    if not 0 < seconds <= MAX_INVITE_SECONDS:
        raise ConfigError(f"--expires {text!r}: an invite works for up to 30 days")
    return seconds


def _addresses(given: str | None, fallback: str) -> tuple[str, ...]:
    text = given or fallback
    found = tuple(format_address(*parse_address(a, "--address")) for a in text.split(",")
                  if a.strip())
    if not found:
        raise ConfigError("--address: give host:port")
    return found


def show(invitation: Invitation, uses: int, expires_at: float, as_json: bool,
         qr: bool) -> None:
    """Print an invite: the join string and the command to send the user."""
    join = invitation.encode()
    command = join_command(join)
    if as_json:
        print_json({"join": join, "command": command, "expires": expires_at, "uses": uses})
        return
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires_at))
    out.print(f"Invite for {uses} key{'s' if uses != 1 else ''}, until {until}. "
              "Send the user this command:")
    out.print(command, markup=False, highlight=False, soft_wrap=True)
    if qr:
        picture = io.StringIO()
        segno.make(join, error="m").terminal(out=picture, compact=True)
        out.print(picture.getvalue(), markup=False, highlight=False, end="")


@app.command("invite")
def invite(
    uses: int = USES_OPTION,
    expires: str = EXPIRES_OPTION,
    name: str = NAME_OPTION,
    address: str | None = ADDRESS_OPTION,
    qr: bool = QR_OPTION,
    db: str | None = DB_OPTION,
    host_key: Path | None = HOST_KEY_OPTION,
    config_file: Path | None = CONFIG_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Make an invite for a new user (admin, on the broker's machine).

    Prints one line for the user to run, `assist help --join STRING`: it
    holds the broker's address, its host key's fingerprint and a code that
    enrols --uses keys until --expires. Only a hash of the code is stored.
    Agents make invites with `assist agent invite`.
    """
    seconds = parse_expiry(expires)
    check_terms(name, uses)  # before any file is touched
    config = BrokerConfig.load(config_file, db=db, host_key_path=host_key)
    host = config.host if config.host not in ("", "0.0.0.0", "::") else socket.getfqdn()
    brokers = _addresses(address, format_address(host, config.port))
    fingerprint = ssh.key_fingerprint(ssh.openssh_key(ssh.load_host_key(config.host_key_path)))
    with open_store(db) as store:
        code, made = make_invite(store, name, uses, seconds, "admin", time.time())
    show(Invitation(brokers, fingerprint, code), uses, made.expires_at, as_json, qr)


@agent_app.command("invite")
def agent_invite(
    uses: int = USES_OPTION,
    expires: str = EXPIRES_OPTION,
    name: str = NAME_OPTION,
    address: str | None = ADDRESS_OPTION,
    qr: bool = QR_OPTION,
    broker: str | None = BROKER_OPTION, key: Path | None = KEY_OPTION, yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION, verbose: int = VERBOSE_OPTION,
) -> None:
    """Make an invite for a new user through the broker (see `assist invite`)."""
    setup(verbose)
    seconds = parse_expiry(expires)
    config = client_config(broker, key)

    async def main() -> tuple[ClientConfig, int, float, str]:
        async with await AgentClient.connect(config, "assist agent", watch=False,
                                             trust=trust_prompt(yes)) as client:
            made = await client.make_invite(uses, seconds, name)
            assert client.config is not None
            return client.config, made.uses, made.expires_at, made.code

    used, count, expires_at, code = asyncio.run(main())
    brokers = _addresses(address, ",".join(used.addresses))
    show(Invitation(brokers, ssh.key_fingerprint(used.host_key), code), count, expires_at,
         as_json, qr)


def own_key() -> Path:
    """assist's own key for the user role, made (Ed25519, 0600) if there is none yet."""
    path = Paths.from_env().config / "keys" / "user_ed25519"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        ssh.generate_key_pair(path, "assist user key")
        err.print(said(f"made a key for you: {path}"))
    return path


def join_helpdesk(join: str, key: Path | None) -> ClientConfig:
    """``assist help --join``: enrol (a key made if needed); the config to go on with."""
    invitation = Invitation.parse(join)
    config = ClientConfig.load(role="user")
    chosen = key or config.key or own_key()
    if not chosen.exists():
        raise ConfigError(f"no such key file {chosen}")
    saved, name = asyncio.run(enrol(invitation, config, chosen))
    err.print(said(f"enrolled as {name} at {saved.address}; assist remembers this broker"))
    return saved
