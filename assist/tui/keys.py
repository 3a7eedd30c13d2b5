"""Translate Textual key events into the bytes a terminal program expects."""

from __future__ import annotations

CSI = "\x1b["

SPECIAL: dict[str, str] = {
    "enter": "\r", "tab": "\t", "shift+tab": CSI + "Z", "backspace": "\x7f",
    "escape": "\x1b", "delete": CSI + "3~", "insert": CSI + "2~",
    "home": CSI + "H", "end": CSI + "F", "pageup": CSI + "5~", "pagedown": CSI + "6~",
    "up": CSI + "A", "down": CSI + "B", "right": CSI + "C", "left": CSI + "D",
    "f1": "\x1bOP", "f2": "\x1bOQ", "f3": "\x1bOR", "f4": "\x1bOS",
    "f5": CSI + "15~", "f6": CSI + "17~", "f7": CSI + "18~", "f8": CSI + "19~",
    "f9": CSI + "20~", "f10": CSI + "21~", "f11": CSI + "23~", "f12": CSI + "24~",
    "ctrl+space": "\x00", "ctrl+at": "\x00",
}
_APP_CURSOR = {"up": "\x1bOA", "down": "\x1bOB", "right": "\x1bOC", "left": "\x1bOD"}


def key_bytes(key: str, character: str | None, app_cursor: bool = False) -> bytes:
    """Bytes for one key press, or ``b""`` if the key has no terminal meaning.

    Args:
        key: Textual key name (``"ctrl+c"``, ``"up"``, ``"a"``).
        character: the printable character, if any.
        app_cursor: the program enabled application cursor keys (DECCKM).
    """
    if app_cursor and key in _APP_CURSOR:
        return _APP_CURSOR[key].encode()
    if key in SPECIAL:
        return SPECIAL[key].encode()
    if key.startswith("ctrl+") and len(key) == 6 and key[5].isalpha():
        return bytes([ord(key[5].lower()) - 96])
    if key.startswith("alt+") and character:
        return b"\x1b" + character.encode()
    if character and character.isprintable():
        return character.encode()
    return b""
