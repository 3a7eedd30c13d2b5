"""Byte streams and the message channel on top of them.

``channel`` is transport-neutral; ``ssh`` adapts asyncssh (the only module
here importing it) and ``memory`` gives an in-process pair for tests.
"""

from assist.transport.channel import ByteStream, ChannelClosed, MessageChannel

__all__ = ["ByteStream", "ChannelClosed", "MessageChannel"]
