"""Persistent state in SQLite: directory, sessions, events, audit chain."""

from assist.store.db import Store

__all__ = ["Store"]
