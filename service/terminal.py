"""Untrusted text on its way to a terminal.

Post text, display names, handles, URLs, file names and error messages from the outside can carry escape
sequences: colours and cursor moves are a nuisance, but OSC 52 writes the clipboard, OSC 8 makes links and some
terminals answer queries into their input. Every face that prints such a string passes it through ``clean``
first (the CLI's lines, tables and log records, the review session's screen), so the terminal only ever receives
escape sequences this program made itself (the review's image graphics). Untrusted text given to rich is also
never parsed as markup: the faces hand rich ``Text`` objects (or ``rich.markup.escape``'d strings) made from the
cleaned text.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Whole escape sequences (7-bit and 8-bit introducers), so no parameter bytes are left behind as text:
#: CSI ... final; OSC, DCS, SOS, PM and APC strings up to their terminator (BEL or ST) or the end of the text;
#: any other ESC sequence (ESC, intermediate bytes, a final byte).
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x1b\\|\x07|\x9c|\Z)"
    r"|\x1b[ -/]*[0-~]?",
    re.DOTALL,
)
#: What is left of C0 (but tab and newline), DEL and C1, one character at a time.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LAYOUT = re.compile(r"[\t\n]")
_C1_AND_DEL = re.compile(r"[\x7f-\x9f]")


def clean(text: object, *, newlines: bool = False) -> str:
    """``text`` (``None`` is empty; anything else as ``str()``) without escape sequences and control characters.

    With ``newlines`` tabs and newlines stay (a post's paragraphs, a multi-line message); without, each becomes a
    space, so the text stays on its line or in its table cell. A carriage return is always removed (it would let
    the text overwrite what came before it on the line)."""
    if text is None:
        return ""
    value = _CONTROLS.sub("", _SEQUENCES.sub("", str(text)))
    return value if newlines else _LAYOUT.sub(" ", value)


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **options)`` safe to print: JSON already escapes C0 characters in
    strings; DEL and C1 (which some terminals obey when UTF-8 encoded) are escaped too. The same data, losslessly,
    since such characters can only stand inside JSON strings."""
    dumped = json.dumps(value, ensure_ascii=False, **options)
    return _C1_AND_DEL.sub(lambda match: f"\\u{ord(match.group()):04x}", dumped)
