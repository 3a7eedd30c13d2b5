"""Connecting from the command line: client config, first-contact trust prompt."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from assist.cli.app import err
from assist.client.connect import TrustPrompt, open_link
from assist.config import ClientConfig

BROKER_OPTION = typer.Option(
    None, "--broker", "-b", metavar="HOST[:PORT][,...]",
    help="Broker address host[:port] (default from client.toml); a helpdesk of several "
    "nodes takes them all, comma-separated, and fails over between them.")
AUDIO_OPTION = typer.Option(
    None, "--audio", metavar="pulse,alsa|none",
    help="Sound systems to try for the call, in order (default: pulse, then alsa); none: "
    "silence, nothing played.")
KEY_OPTION = typer.Option(
    None, "--key", "-k",
    help="SSH private key (default: from client.toml, else ~/.ssh/id_* or ssh-agent).")
YES_OPTION = typer.Option(False, "--yes", "-y",
                          help="Trust the broker's host key on first contact without asking.")


def trust_prompt(yes: bool) -> TrustPrompt:
    """Ask like ssh does on first contact; ``--yes`` answers for scripts."""

    def ask(address: str, fingerprint: str) -> bool:
        if yes:
            err.print(f"trusting broker {address} with key {fingerprint} (--yes)")
            return True
        if not sys.stdin.isatty():
            return False
        err.print(f"The broker at [bold]{address}[/] is not known yet.")
        err.print(f"Its key fingerprint is [bold]{fingerprint}[/].")
        answer = input("Check it with your helpdesk. Trust and remember it? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    return ask


def client_config(broker: str | None, key: Path | None, role: str = "agent") -> ClientConfig:
    """Load the client config with command-line overrides, with ``role``'s key."""
    return ClientConfig.load(broker=broker, key=key, role=role)


def app_config(broker: str | None, key: Path | None, yes: bool, role: str) -> ClientConfig:
    """The client config for a full-screen app, with the broker's key already pinned.

    A first-contact question must be asked on the plain terminal, before the
    app takes the screen over.
    """
    config = client_config(broker, key, role)
    if not config.host_key and not yes:
        asyncio.run(_pin(config, role))
        config = client_config(broker, key, role)
    return config


async def _pin(config: ClientConfig, role: str) -> None:
    link, _ = await open_link(config, role, trust_prompt(False))
    await link.close()
