"""``assist serve`` in a process of its own (so a test can kill it with SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class ServeProcess:
    """``assist serve`` on a fixed port and store, its files and log in ``root``.

    Args:
        root: its folder (config, data, recordings, log).
        port: the port on 127.0.0.1.
        db: its store (a SQLite file or a PostgreSQL URL).
        host_key: the host key file (several nodes share one).
        args: more options (``--bus``, ``--node``).
    """

    def __init__(self, root: Path, port: int, db: str, host_key: Path,
                 args: tuple[str, ...] = ()) -> None:
        self.root, self.port, self.db, self.host_key, self.args = root, port, db, host_key, args
        root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "ASSIST_CONFIG_DIR": str(root / "cfg"),
                    "ASSIST_DATA_DIR": str(root / "data"),
                    "ASSIST_STATE_DIR": str(root / "state"),
                    "ASSIST_BROKER_NAME": "test-broker",
                    "ASSIST_BROKER_RECORDINGS": str(root / "recordings"),
                    # Long enough for the agent to come back after a restart.
                    "ASSIST_BROKER_AGENT_GRACE": "30"}

    def start(self) -> None:
        """Start it and wait until it listens."""
        log = (self.root / "broker.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assist", "serve", "--port", str(self.port), "--db",
             self.db, "--host-key", str(self.host_key), "-v", *self.args],
            env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the broker did not start: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """Stop it cleanly, if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def log(self) -> str:
        """The end of its log."""
        return (self.root / "broker.log").read_text(errors="replace")[-3000:]

    def assist(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another assist command with this broker's environment."""
        return subprocess.run([sys.executable, "-m", "assist", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)
