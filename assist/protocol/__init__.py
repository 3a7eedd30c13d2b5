"""The wire protocol: typed messages and their codec. Pure: no I/O."""

from assist.protocol.codec import MAX_MESSAGE_BYTES, LineBuffer, decode, encode
from assist.protocol.messages import PROTOCOL_VERSION, Message

__all__ = ["MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "LineBuffer", "Message", "decode", "encode"]
