"""Terminal output without what acts on the viewer's terminal instead of drawing on it.

A recording or a replay writes the user's terminal output to someone else's
real terminal. Most of it draws (text, colours, cursor moves, the alternate
screen) and must pass unchanged, so that vim and htop replay as they were.
Some of it acts on the terminal itself: OSC strings set the clipboard (OSC
52), the window title (OSC 0/1/2), hyperlinks and colours; DCS, APC, PM and
SOS strings talk to the terminal; a few CSI sequences ask it questions whose
answers it types into whatever reads next (device status ``CSI 6 n``,
device attributes ``CSI c``, window reports ``CSI t``, mode reports
``CSI ? n $ p``). :class:`HostFilter` drops exactly those, across chunk
boundaries, in 7-bit (``ESC ]``) and UTF-8 encoded C1 (``U+009D``) forms.
:func:`drawn` also takes the bidi overrides and zero-width characters out of
decoded text, which the agent's live view never draws either: they disguise
what a line says.

Pure, and bounded: an unterminated string is dropped as it arrives, never
buffered; a control sequence is held for at most :data:`MAX_CSI` bytes.
"""

from __future__ import annotations

import re

ESC = 0x1B
BEL = 0x07
MAX_CSI = 256
"""Longest control sequence held while waiting for its final byte; longer ones pass."""

_STRING_OPENERS = frozenset(b"]P_^X")
"""After ESC: OSC, DCS, APC, PM, SOS: strings for the terminal itself."""
_C1_STRINGS = frozenset((0x9D, 0x90, 0x9F, 0x9E, 0x98))
_C1_CSI = 0x9B
_C1_ST = 0x9C
_QUERIES = frozenset(b"nctx")
"""CSI final bytes that ask the terminal to answer (or report on its window)."""

_GROUND, _ESC, _C2, _CSI, _CSI_DROP, _STRING, _STRING_ESC, _STRING_C2 = range(8)
_CAN, _SUB = 0x18, 0x1A
"""Abort any sequence or string in progress (as terminals do)."""
_GROUND_STOP = re.compile(rb"\x1b|\xc2(?![\xa0-\xbf])")
"""Where plain output stops: an ESC, or a 0xC2 that does not start U+00A0-U+00BF (a C1
control in UTF-8, maybe one at the end of the chunk, or no UTF-8 at all)."""
_CSI_WHOLE = re.compile(rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]")
"""A whole control sequence, as almost all arrive."""
_STRING_STOP = re.compile(rb"[\x07\x18\x1a\x1b\xc2]")
_FORMAT = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
"""Bidi overrides, embeddings and isolates, marks, zero-width characters."""


def drawn(text: str) -> str:
    """Decoded output without the format characters that reorder or hide text."""
    return _FORMAT.sub("", text) if _FORMAT.search(text) else text


class HostFilter:
    """Feed terminal output chunk by chunk; get back what may be drawn."""

    def __init__(self) -> None:
        self._state = _GROUND
        self._csi = bytearray()

    def feed(self, data: bytes) -> bytes:
        """The part of ``data`` (following what came before) that only draws."""
        out = bytearray()
        at, end = 0, len(data)
        while at < end:
            # Runs of plain output (almost all of it) and of dropped strings go at once.
            if self._state == _GROUND:
                stop = _GROUND_STOP.search(data, at)
                if stop is None:
                    out += data[at:]
                    break
                out += data[at : stop.start()]
                at = stop.start()
                whole = _CSI_WHOLE.match(data, at)
                if whole is not None:
                    if not _asks(whole.group()):
                        out += whole.group()
                    at = whole.end()
                    continue
            elif self._state == _STRING:
                stop = _STRING_STOP.search(data, at)
                if stop is None:
                    break
                at = stop.start()
            self._step(data[at], out)
            at += 1
        return bytes(out)

    def feed_text(self, text: str) -> str:
        """The same for decoded output (whole characters in, whole characters out),
        also without format characters (:func:`drawn`)."""
        return drawn(self.feed(text.encode("utf-8", "surrogatepass")).decode("utf-8",
                                                                             "replace"))

    def _step(self, byte: int, out: bytearray) -> None:
        state = self._state
        if state == _GROUND:
            if byte == ESC:
                self._state = _ESC
            elif byte == 0xC2:
                self._state = _C2  # maybe the UTF-8 form of a C1 control
            else:
                out.append(byte)
        elif state == _ESC:
            if byte in _STRING_OPENERS:
                self._state = _STRING
            elif byte == 0x5B:  # [
                self._csi[:] = b"\x1b["
                self._state = _CSI
            elif byte == 0xC2:
                # ESC then (maybe) a C1 control in UTF-8: the ESC is void, and what
                # follows is looked at as a C1 control would be, never passed raw.
                self._state = _C2
            elif byte != ESC:  # ESC ESC: the first is void, the second starts over
                out += bytes((ESC, byte))
                self._state = _GROUND
        elif state == _C2:
            if byte in _C1_STRINGS:
                self._state = _STRING
            elif byte == _C1_CSI:
                self._csi[:] = b"\x1b["
                self._state = _CSI
            elif 0x80 <= byte <= 0xBF:  # a character such as U+00A0: whole, at once
                out += bytes((0xC2, byte))
                self._state = _GROUND
            else:
                # Not UTF-8: the 0xC2 goes. Passed on alone it could pair with a byte
                # after a dropped sequence into a C1 control (C2 9D is OSC).
                self._state = _GROUND
                self._step(byte, out)
        elif state in (_CSI, _CSI_DROP):
            self._csi_byte(byte, out)
        elif state == _STRING:
            if byte in (BEL, _CAN, _SUB):
                self._state = _GROUND
            elif byte == ESC:
                self._state = _STRING_ESC
            elif byte == 0xC2:
                self._state = _STRING_C2
        elif state == _STRING_ESC:
            self._state = _GROUND if byte == 0x5C else _STRING_ESC if byte == ESC else _STRING
        else:  # _STRING_C2
            self._state = _GROUND if byte == _C1_ST else _STRING

    def _csi_byte(self, byte: int, out: bytearray) -> None:
        csi = self._csi
        if byte == ESC:  # aborts the sequence, starts another
            csi.clear()
            self._state = _ESC
        elif byte in (_CAN, _SUB):
            csi.clear()
            self._state = _GROUND
        elif byte >= 0x80:
            # No control sequence holds such a byte: it is cut here, and the byte is
            # looked at afresh (it may start a C1 control, which must not ride along).
            csi.clear()
            self._state = _GROUND
            self._step(byte, out)
        elif 0x40 <= byte <= 0x7E:
            if self._state == _CSI:
                csi.append(byte)
                if not _asks(csi):
                    out += csi
            csi.clear()
            self._state = _GROUND
        elif self._state == _CSI:
            # C0 controls inside a sequence are carried out by the terminal in place;
            # they stay in order with it.
            csi.append(byte)
            if len(csi) > MAX_CSI:
                csi.clear()
                self._state = _CSI_DROP  # no terminal takes that much: drop it whole


def _asks(csi: bytes | bytearray) -> bool:
    """True for a CSI sequence that makes the terminal answer or report."""
    final = csi[-1]
    if final in _QUERIES:
        return True
    return final == 0x70 and len(csi) > 3 and csi[-2] == 0x24  # CSI ... $ p: DECRQM
