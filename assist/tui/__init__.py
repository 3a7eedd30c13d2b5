"""Textual apps: ``assist help`` (user) and ``assist console`` (agent)."""
