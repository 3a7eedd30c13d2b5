"""``assist serve``: run the broker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import typer

from assist.broker.server import Broker
from assist.cli.app import VERBOSE_OPTION, app, err
from assist.cli.runtime import steady_gc
from assist.config import BrokerConfig
from assist.core.urls import masked
from assist.log import setup
from assist.store.engine import shown


@app.command()
def serve(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: 127.0.0.1)."),
    port: int | None = typer.Option(
        None, "--port", "-p", help="Port to listen on (default: 2222)."),
    db: str | None = typer.Option(
        None, "--db", metavar="PATH|URL",
        help="The store: a SQLite file (default: in the platform data dir) or a "
        "postgresql://USER@HOST/DB URL shared by several brokers."),
    host_key: Path | None = typer.Option(
        None, "--host-key", help="Host key file, generated on first run."),
    bus: str | None = typer.Option(
        None, "--bus", metavar="nats://HOST:PORT",
        help="The NATS server between the nodes of a helpdesk of several brokers (with "
        "--db on one shared PostgreSQL); without it the broker is on its own."),
    node: str | None = typer.Option(
        None, "--node", help="This node's name among several: unique, and the same each "
        "time it starts (default: the broker's name)."),
    config: Path | None = typer.Option(None, "--config", help="broker.toml to read."),
    allow_unregistered: bool | None = typer.Option(
        None, "--allow-unregistered/--registered-only",
        help="Let users whose key is not registered join (shown as unverified guests)."),
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Run the helpdesk broker: queue, routing, relay and audit over SSH."""
    setup(max(verbose, 1))
    settings = BrokerConfig.load(config, host=host, port=port, db=db, host_key_path=host_key,
                                 allow_unregistered_users=allow_unregistered, bus=bus,
                                 node=node)
    asyncio.run(_serve(settings))


async def _serve(config: BrokerConfig) -> None:
    broker = Broker(config)
    await broker.start()
    steady_gc()
    err.print(f"assist broker [bold]{config.name}[/] listening on {config.host}:{broker.port}")
    err.print(f"host key {broker.fingerprint}  store {shown(config.db)}")
    if config.bus:
        err.print(f"node {config.node_name} of the helpdesk on the bus {masked(config.bus)}")
    err.print("press Ctrl-C to stop")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await broker.stop()
        err.print("broker stopped; waiting users keep their place for the next start")
