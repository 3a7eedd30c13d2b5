"""Headless client APIs for the user and agent sides (used by CLIs, TUIs, scripts)."""

from assist.client.agent import AgentClient
from assist.client.link import Link
from assist.client.user import UserClient

__all__ = ["AgentClient", "Link", "UserClient"]
