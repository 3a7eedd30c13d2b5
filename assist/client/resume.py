"""Remembering a place in the queue across restarts (of the client or the broker).

The token is a secret that lets its holder reclaim the place, so the file is
private to the user (mode 0600).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from assist.files import private_dir, write_private


@dataclass(frozen=True)
class Place:
    """A saved place: session id, resume token and the topic it was for."""

    session: str
    token: str
    topic: str


class ResumeStore:
    """A small JSON file of places, one per broker address."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "resume.json"

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, broker: str) -> Place | None:
        """Return the saved place for ``broker``, if any."""
        entry = self._read().get(broker)
        try:
            return Place(entry["session"], entry["token"], entry["topic"]) if entry else None
        except (KeyError, TypeError):
            return None

    def save(self, broker: str, place: Place | None) -> None:
        """Save (or with ``None`` forget) the place for ``broker``; best effort."""
        data = self._read()
        if place is None:
            data.pop(broker, None)
        else:
            data[broker] = {"session": place.session, "token": place.token, "topic": place.topic}
        try:
            private_dir(self.path.parent)
            # A new private file renamed over the old one: 0600 whatever the old
            # one's mode was, and never half written.
            write_private(self.path, json.dumps(data).encode())
        except OSError:
            pass  # Losing the token only costs the place after a restart.
