"""Keystroke-echo baseline: ``ssh`` + ``tmux attach`` on this machine, on 127.0.0.1.

The reference that assist's agent keystroke -> echo is held to ("within 2x of
``ssh`` + ``tmux attach`` on the same machine", see /work/shared/DESIGN.md).
Everything is private to one run and removed afterwards: an OpenSSH server
(its own host key, ``authorized_keys`` with a fresh client key and
``sshd_config``, listening on a free port of 127.0.0.1 only), a tmux server on
its own socket running ``bash --norc --noprofile`` (``PS1='$ '``) at 100x30 as
bench/session.py does, and an ``ssh -tt ... tmux attach`` client in a real pty
of that size::

    python -m bench.sshd [--keys 200]

Measures, one key at a time: from writing one key byte to the ssh client's pty
until the client's output, fed into assist's own ``Emulator`` exactly as the
agent's view is in bench/session.py (``AgentSide._line_is``), shows ``$ ``
followed by exactly the typed text on the cursor's row. The path is the ssh
client, loopback TCP, sshd, the tmux client, the tmux server, bash's echo, and
all the way back. Ctrl-U clears the line every 40 keys, as in
``AgentSide.keystrokes``.

Needs the Debian packages ``openssh-server``, ``openssh-client`` and ``tmux``;
runs as root (the normal case here) or as any user logging in as itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import getpass
import os
import secrets
import shutil
import socket
import struct
import tempfile
import termios
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from assist.share.emulator import Emulator
from bench.stats import print_table

COLS, ROWS = 100, 30
"""The shared terminal's size in bench/session.py."""
FRAME = 1 / 30
"""The viewer also parses any backlog once per frame, as the console does."""
LINE = 40
"""Keys typed before Ctrl-U clears the line (before it could wrap)."""
SSHD = "/usr/sbin/sshd"
PRIVSEP = Path("/run/sshd")
"""sshd's privilege separation directory; it refuses to start without it."""
START_TIMEOUT = 10.0

_TOOLS = {SSHD: "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
          "tmux": "tmux", "bash": "bash"}


def _require_tools() -> dict[str, str]:
    """Absolute paths of the programs needed, or a RuntimeError naming the package."""
    found: dict[str, str] = {}
    for tool, package in _TOOLS.items():
        path = shutil.which(tool)
        if path is None:
            raise RuntimeError(f"{tool} not found: install the Debian package {package} "
                               f"(apt-get install {package})")
        found[tool] = path
    return found


def _free_port() -> int:
    """A port free on 127.0.0.1 right now (sshd binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _env() -> dict[str, str]:
    """Our environment without what would point tmux or ssh elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TMUX", "TMUX_PANE", "TMUX_TMPDIR", "SSH_AUTH_SOCK")}
    env["TERM"] = "xterm-256color"
    return env


async def _end(proc: asyncio.subprocess.Process | None) -> None:
    """Terminate ``proc`` if it still runs; kill it if it will not go within 5 s."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _run(*argv: str) -> None:
    """Run a short command; raise with its output if it fails.

    Output goes to a file, not a pipe: ``tmux new-session -d`` leaves a server
    behind that inherits the command's stdout, so a pipe would never close.
    """
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT, env=_env())
        await proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {text}")


# -- the private OpenSSH server ----------------------------------------------------------


class Sshd:
    """A private ``sshd -D -e`` on 127.0.0.1 with its own keys and config in ``root``."""

    def __init__(self, root: Path, tools: dict[str, str]) -> None:
        self.root = root
        self.tools = tools
        self.host_key = root / "host_key"
        self.client_key = root / "client_key"
        self.known_hosts = root / "known_hosts"
        self.config = root / "sshd_config"
        self.user = getpass.getuser()
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=40)
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Generate keys, write the config, start sshd and wait until it listens."""
        keygen = self.tools["ssh-keygen"]
        await _run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bench-host",
                   "-f", str(self.host_key))
        await _run(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bench-client",
                   "-f", str(self.client_key))
        authorized = self.root / "authorized_keys"
        authorized.write_bytes(Path(f"{self.client_key}.pub").read_bytes())
        authorized.chmod(0o600)
        self.known_hosts.touch(0o600)
        if os.geteuid() == 0 and not PRIVSEP.is_dir():
            PRIVSEP.mkdir(mode=0o755, parents=True, exist_ok=True)
        last = ""
        for _ in range(3):  # the free port may be taken before sshd binds it
            self.port = _free_port()
            self._write_config(authorized)
            try:
                await self._launch()
                return
            except RuntimeError as error:
                last = str(error)
                if "Address already in use" not in last:
                    raise
        raise RuntimeError(last)

    def _write_config(self, authorized: Path) -> None:
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {self.user}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "DisableForwarding yes",
            "PermitTTY yes",
            "PrintMotd no",
            "PrintLastLog no",
            "Banner none",
            "",
        ]))

    async def _launch(self) -> None:
        self.log.clear()
        self.proc = await asyncio.create_subprocess_exec(
            SSHD, "-D", "-e", "-f", str(self.config), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=_env())
        stderr = self.proc.stderr
        assert stderr is not None
        ready = f"Server listening on 127.0.0.1 port {self.port}"
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    line = (await stderr.readline()).decode(errors="replace")
                    if not line:
                        await self.proc.wait()
                        self.proc = None
                        raise RuntimeError("sshd did not start: " + " | ".join(self.log))
                    self.log.append(line.strip())
                    if ready in line:
                        break
        except TimeoutError:
            await self.stop()
            raise RuntimeError("sshd did not start in time: " + " | ".join(self.log)) from None
        self._drain = asyncio.ensure_future(self._keep_draining(stderr))

    async def _keep_draining(self, stderr: asyncio.StreamReader) -> None:
        # With -e every connection is logged to stderr; keep the last lines for errors.
        while line := await stderr.readline():
            self.log.append(line.decode(errors="replace").strip())

    def command(self, *remote: str) -> list[str]:
        """The ssh client's argv running ``remote`` with a tty on this server."""
        return [self.tools["ssh"], "-tt", "-F", "/dev/null",
                "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR", "-o", "ControlPath=none",
                "-l", self.user, "-p", str(self.port), "127.0.0.1", *remote]

    async def stop(self) -> None:
        """Stop sshd (and with it the sessions it serves)."""
        proc, self.proc = self.proc, None
        await _end(proc)
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None


# -- the viewer: the ssh client's pty, read into assist's emulator ------------------------


class PtyViewer:
    """Reads a pty master into an ``Emulator`` as bytes arrive, as the agent's view does."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.emulator = Emulator(COLS, ROWS)
        self.changed = asyncio.Event()
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._read)
        self._frames = asyncio.ensure_future(self._frame_loop())

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO once the client side of the pty is gone
            data = b""
        if not data:
            self.closed = True
            self._loop.remove_reader(self.master)
            self.changed.set()
            return
        self.emulator.receive(data)
        self._parse()

    def _parse(self) -> None:
        if self.emulator.process():
            self.changed.set()

    async def _frame_loop(self) -> None:
        while True:
            self._parse()
            await asyncio.sleep(FRAME)

    def type(self, key: bytes) -> None:
        """Write key bytes to the pty, as a person typing into the ssh client."""
        os.write(self.master, key)

    def cursor_line(self) -> str:
        """The text of the cursor's row, trailing blanks stripped."""
        emulator = self.emulator
        row = emulator.screen.buffer[emulator.cursor[1]]
        return "".join(row[x].data for x in range(emulator.size[0])).rstrip()

    async def line_is(self, typed: str, timeout: float = 5.0) -> None:
        """Wait until the view shows the prompt followed by exactly ``typed``."""
        want = f"$ {typed}".rstrip()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not self.emulator.backlog and self.cursor_line() == want:
                        return
                    if self.closed:
                        raise RuntimeError("the ssh client exited; its screen: "
                                           + " | ".join(r.rstrip() for r in self.emulator.text()
                                                        if r.strip()))
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise RuntimeError(f"no {want!r} on the view within {timeout} s; cursor row: "
                               f"{self.cursor_line()!r}") from None

    def close(self) -> None:
        """Stop reading and close the master."""
        self._frames.cancel()
        if not self.closed:
            self._loop.remove_reader(self.master)
            self.closed = True
        os.close(self.master)


@contextlib.contextmanager
def _tempdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="assist-bench-sshd-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def _tmux(tmux: str, bash: str) -> AsyncIterator[str]:
    """A private tmux server with a 100x30 bash session; yields its socket name."""
    sock = f"assist-bench-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        await _run(tmux, "-L", sock, "-f", "/dev/null", "new-session", "-d", "-s", "bench",
                   "-x", str(COLS), "-y", str(ROWS), "-e", "PS1=$ ", "-e", "HISTFILE=/dev/null",
                   bash, "--norc", "--noprofile")
        # No status line: the pane is the whole 100x30 terminal, as the shared one is.
        await _run(tmux, "-L", sock, "set-option", "-g", "status", "off")
        yield sock
    finally:
        with contextlib.suppress(RuntimeError):
            await _run(tmux, "-L", sock, "kill-server")
        with contextlib.suppress(OSError):
            (Path("/tmp") / f"tmux-{os.getuid()}" / sock).unlink()


@contextlib.asynccontextmanager
async def _ssh_client(argv: list[str]) -> AsyncIterator[PtyViewer]:
    """``argv`` (the ssh client) in a fresh 100x30 pty, its output read by a viewer."""
    master, slave = os.openpty()
    proc: asyncio.subprocess.Process | None = None
    viewer: PtyViewer | None = None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        viewer = PtyViewer(master)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=_env())
        os.close(slave)
        slave = -1
        yield viewer
    finally:
        if slave >= 0:
            os.close(slave)
        await _end(proc)
        if viewer is not None:
            viewer.close()
        else:
            os.close(master)


async def _type(viewer: PtyViewer, count: int) -> list[float]:
    """The same scheme as ``AgentSide.keystrokes`` in bench/session.py."""
    samples: list[float] = []
    typed = ""
    for n in range(count):
        if len(typed) >= LINE:  # Ctrl-U clears the line before it wraps
            viewer.type(b"\x15")
            await viewer.line_is("")
            typed = ""
        key = "0123456789"[n % 10]
        start = time.perf_counter()
        viewer.type(key.encode())
        typed += key
        await viewer.line_is(typed)
        samples.append(time.perf_counter() - start)
    viewer.type(b"\x15")
    await viewer.line_is("")
    return samples


@contextlib.asynccontextmanager
async def ssh_tmux() -> AsyncIterator[Callable[[int], Awaitable[list[float]]]]:
    """A running baseline: yields ``type(count)``, seconds per key to its echo.

    Starts a private sshd and tmux server, attaches with ``ssh -tt ... tmux
    attach`` in a 100x30 pty and keeps it up, so that a benchmark can take
    its samples in turns with assist's (machine noise then hits both alike);
    everything is removed afterwards, also on errors. Raises RuntimeError if
    a needed program is missing (naming its Debian package) or the setup fails.
    """
    tools = _require_tools()
    with _tempdir() as root:
        sshd = Sshd(root, tools)
        try:
            await sshd.start()
            async with _tmux(tools["tmux"], tools["bash"]) as sock, \
                    _ssh_client(sshd.command("tmux", "-L", sock, "attach")) as viewer:
                try:
                    await viewer.line_is("", timeout=START_TIMEOUT)
                except RuntimeError as error:
                    raise RuntimeError(f"{error}; sshd: {' | '.join(sshd.log)}") from None

                async def type_keys(count: int) -> list[float]:
                    return await _type(viewer, count)

                yield type_keys
        finally:
            await sshd.stop()


async def ssh_tmux_keystrokes(count: int) -> list[float]:
    """Seconds from each of ``count`` keys written to the ssh client until its echo shows."""
    async with ssh_tmux() as type_keys:
        return await type_keys(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=200, help="keystrokes timed")
    args = parser.parse_args()
    samples = asyncio.run(ssh_tmux_keystrokes(args.keys))
    print_table("keystroke echo baseline: ssh + tmux attach (127.0.0.1, 100x30)", [
        ("keystroke -> echo on the viewer (ssh -tt, tmux attach)", len(samples), samples,
         "assist's echo within 2x"),
    ])


if __name__ == "__main__":
    main()
