"""Single key presses from a terminal, without Enter: the terminal in cbreak mode for as long as it is needed.

cbreak (not raw) keeps Ctrl-C as SIGINT and the output's newline handling, so a crash or an interrupt still
leaves a usable terminal, and ``finally`` restores the exact previous settings either way.
"""

from __future__ import annotations

import os
import select
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Byte sequences with a name; anything else is returned as the text it decodes to.
NAMED = {
    b"\x7f": "backspace",
    b"\x08": "backspace",
    b" ": "space",
    b"\r": "enter",
    b"\n": "enter",
    b"\x04": "eof",
    b"\x1b": "escape",
    b"\x1b[D": "left",
    b"\x1b[C": "right",
    b"\x1b[A": "up",
    b"\x1b[B": "down",
}


def name_of(data: bytes) -> str:
    """The name a key's bytes stand for: ``backspace``, ``space``, ``left``... or the character itself."""
    if not data:
        return "eof"
    return NAMED.get(data) or data.decode("utf-8", errors="ignore")


def read_key(fd: int) -> str:
    """Block for one key press. An escape sequence (arrow keys) arrives as one key: its remaining bytes follow
    within milliseconds, so they are read with a short timeout instead of being taken as separate keys."""
    data = os.read(fd, 1)
    if data == b"\x1b":
        while select.select([fd], [], [], 0.03)[0]:
            data += os.read(fd, 1)
            if data[-1:].isalpha() or data[-1:] == b"~":
                break
    elif data and data[0] >= 0xC0:  # the first byte of a multi-byte UTF-8 character
        while len(data) < 4 and select.select([fd], [], [], 0.03)[0]:
            data += os.read(fd, 1)
            try:
                data.decode("utf-8")
                break
            except UnicodeDecodeError:
                continue
    return name_of(data)


@contextmanager
def single_keys(fd: int) -> Iterator[Callable[[], str]]:
    """Put the terminal on ``fd`` in cbreak mode and yield a function returning the next key's name."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield lambda: read_key(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
