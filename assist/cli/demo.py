"""``assist demo``: the whole product on one machine, with one command.

A broker on a temporary store (127.0.0.1, a free port), a demo agent and a
demo user with fresh keys, a scripted user asking for help from a real
shell, and the agent console in front of you. Everything stays on
127.0.0.1 and goes away when the console closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shlex
import shutil
import tempfile
import threading
import time
from pathlib import Path

import typer

from assist.broker.server import Broker
from assist.cli.app import VERBOSE_OPTION, app, err, out
from assist.client.demo_user import DemoUser
from assist.config import BrokerConfig, ClientConfig
from assist.core import pubkey
from assist.errors import AssistError, ConfigError, ConnectionFailed
from assist.log import setup
from assist.protocol.messages import Role
from assist.transport import ssh

log = logging.getLogger(__name__)

AGENT, USER, YOU = "demo-agent", "demo-user", "you"


def portrait(path: Path, name: str) -> Path:
    """A simple portrait (a head with the initials) at ``path``, for the demo's camera."""
    if path.exists():
        return path
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (40, 70, 110))
    draw = ImageDraw.Draw(image)
    draw.ellipse((110, 30, 210, 130), fill=(230, 190, 150))  # head
    draw.rounded_rectangle((80, 140, 240, 260), radius=40, fill=(90, 140, 200))  # shoulders
    letters = "".join(part[0] for part in name.replace("-", " ").split()[:2]).upper()
    draw.text((160, 80), letters, fill=(40, 40, 60), anchor="mm", font_size=40)
    image.save(path)
    return path


class DemoBackground(threading.Thread):
    """The broker and the scripted user, on an event loop of their own."""

    def __init__(self, root: Path, rounds: int = 3) -> None:
        super().__init__(name="assist-demo", daemon=True)
        self.root = root
        self.rounds = rounds
        self.ready = threading.Event()
        self.error: AssistError | None = None
        self.port = 0
        self.public_key = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quit: asyncio.Event | None = None

    def client_config(self, name: str) -> ClientConfig:
        """A client config for one of the demo's people, the broker already pinned.

        The demo agent's camera is a picture of their initials, so that a user
        of the demo sees a face in their panel.
        """
        camera = str(portrait(self.root / f"{name}-face.png", name)) if name == AGENT else ""
        return ClientConfig(host="127.0.0.1", port=self.port, host_key=self.public_key,
                            key=self.root / name, file=self.root / f"{name}.toml",
                            state=self.root / f"{name}-state", os_user=name,
                            hostname="demo", media_hosts=("127.0.0.1",), camera=camera)

    def your_command(self) -> str:
        """The command that makes you a user of the demo, with a config of its own.

        Its client config (the demo broker pinned, your demo key) lives in the
        demo's folder: your own ``client.toml`` is never read or written.
        """
        folder = self.root / f"{YOU}-config"
        config = dataclasses.replace(self.client_config(YOU), file=folder / "client.toml")
        folder.mkdir(exist_ok=True)
        # Media stays on this machine, as everything of the demo does.
        config.file.write_text('media_hosts = ["127.0.0.1"]\n', encoding="utf-8")
        config.save(keys={"user_key": str(self.root / YOU)})
        return (f"ASSIST_CONFIG_DIR={shlex.quote(str(folder))} "
                f"ASSIST_STATE_DIR={shlex.quote(str(folder / 'state'))} "
                "assist help 'my own problem'")

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except AssistError as exc:
            self.error = exc
        finally:
            self.ready.set()

    async def _main(self) -> None:
        config = BrokerConfig(host="127.0.0.1", port=0, db=str(self.root / "broker.db"),
                              host_key_path=self.root / "host_key", name="demo-helpdesk",
                              recordings=self.root / "recordings", resume_grace=30.0)
        broker = Broker(config)
        await broker.start()
        try:
            assert broker.store is not None
            people: tuple[tuple[Role, str], ...] = (("agent", AGENT), ("user", USER),
                                                     ("user", YOU))
            for role, name in people:
                line = ssh.generate_key_pair(self.root / name, f"{name}@assist-demo")
                broker.store.directory.add(role, name, pubkey.parse(line), time.time())
            self.port, self.public_key = broker.port, broker.public_key
            self._loop, self._quit = asyncio.get_running_loop(), asyncio.Event()
            self.ready.set()
            user = asyncio.ensure_future(DemoUser(self.client_config(USER),
                                                  rounds=self.rounds).run())
            await self._quit.wait()
            user.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssistError):
                await user
        finally:
            await broker.stop()

    def stop(self) -> None:
        """Stop the scripted user and the broker, and wait for them."""
        if self._loop is not None and self._quit is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._quit.set)
        self.join(10)


@app.command()
def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the demo's store, keys and "
                                                    "recordings (their folder is printed)."),
    rounds: int = typer.Option(3, "--rounds", help="How many times the demo user asks."),
    verbose: int = VERBOSE_OPTION,
) -> None:
    """See assist at work: a broker, a user asking for help, and your agent console.

    In the console: Enter accepts the waiting user, F6 verifies them, F8 asks
    to type for them, F7 draws on their screen, F2 chats, F10 ends with a root
    cause, Ctrl-Q quits. To be a user yourself, run the `assist help` line
    printed at start in another terminal.
    """
    setup(verbose)
    root = Path(tempfile.mkdtemp(prefix="assist-demo-"))
    background = DemoBackground(root, rounds)
    try:
        background.start()
        background.ready.wait(30)
        if background.error is not None:
            raise background.error
        if not background.port:
            raise ConfigError("the demo broker did not start in 30 s")
        yourself = background.your_command()
        err.print(f"demo broker on 127.0.0.1:{background.port}; a demo user is waiting.")
        err.print(f"To ask for help yourself, in another terminal:\n  {yourself}")
        from assist.tui import graphics
        from assist.tui.console_app import ConsoleApp

        mode = graphics.detect()  # asks the terminal, before the console owns it
        console = ConsoleApp(background.client_config(AGENT), graphics=mode,
                             banner=f"Be a user yourself, in another terminal: {yourself}")
        console.run()
        if console.error:
            raise ConnectionFailed(console.error)
    finally:
        background.stop()
        if keep:
            out.print(f"demo files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    out.print("Demo finished. Run `assist serve` for a real helpdesk (see README).")
