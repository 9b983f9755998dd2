"""Draw an image inside a terminal: the terminal's own graphics protocol where it has one, else colour blocks.

* kitty graphics protocol (kitty, Ghostty): PNG sent in base64 chunks, placed over a box of cells.
* iTerm2 inline images (iTerm2, WezTerm, mintty): one OSC 1337 sequence with the file in base64.
* sixel (foot, mlterm, contour, xterm built with it): a 6-row band encoding of a palette image.
* half-blocks: ``▀`` with a 24-bit foreground (top pixel) and background (bottom pixel) per cell; works in any
  colour terminal and is what a multiplexer (tmux, screen) gets, since those do not pass graphics through.

Each encoder is a pure function from a Pillow image and a box of cells to the text to write, so tests can check
the bytes without a terminal.
"""

from __future__ import annotations

import base64
import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Protocol = Literal["kitty", "iterm", "sixel", "blocks", "none"]
SIXEL_TERMS = ("sixel", "mlterm", "foot", "yaft", "contour")
_ESC = "\x1b"
_ST = "\x1b\\"


@dataclass(frozen=True)
class Box:
    """Where the image may go: ``cols`` x ``rows`` cells, each ``cell_w`` x ``cell_h`` pixels (for sixel)."""

    cols: int
    rows: int
    cell_w: int = 10
    cell_h: int = 20


def detect(env: Mapping[str, str], setting: str = "auto") -> Protocol:
    """The protocol to use: ``setting`` unless it is ``auto``, else what the environment says the terminal is."""
    if setting != "auto":
        return setting  # type: ignore[return-value]
    term = env.get("TERM", "").lower()
    program = env.get("TERM_PROGRAM", "")
    if term in ("", "dumb"):
        return "none"
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return "blocks"
    if env.get("KITTY_WINDOW_ID") or "kitty" in term or "ghostty" in term:
        return "kitty"
    if program in ("iTerm.app", "WezTerm", "mintty") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if any(name in term for name in SIXEL_TERMS):
        return "sixel"
    return "blocks"


def fit_cells(width: int, height: int, box: Box) -> tuple[int, int]:
    """The largest (cols, rows) showing a ``width`` x ``height`` image undistorted in ``box``; a cell is taken
    to be twice as tall as wide, which is close for common terminal fonts."""
    scale = min(box.cols / width, 2 * box.rows / height)
    return max(1, round(width * scale)), max(1, round(height * scale / 2))


def render(image: Image.Image, protocol: Protocol, box: Box) -> str:
    """The text that draws ``image`` at the cursor within ``box`` (empty for ``none``)."""
    if protocol == "none" or box.cols < 1 or box.rows < 1:
        return ""
    image = image.convert("RGB")
    if protocol == "kitty":
        return kitty(image, *fit_cells(*image.size, box))
    if protocol == "iterm":
        return iterm(image, *fit_cells(*image.size, box))
    if protocol == "sixel":
        width, height = image.size
        scale = min(box.cols * box.cell_w / width, box.rows * box.cell_h / height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return sixel(image.resize(size, Image.Resampling.LANCZOS))
    return half_blocks(image, box)


def _png(image: Image.Image, max_side: int = 1024) -> bytes:
    image = image.copy()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def kitty(image: Image.Image, cols: int, rows: int, chunk: int = 4096) -> str:
    """kitty graphics protocol: transmit and display a PNG (``f=100``) scaled into ``cols`` x ``rows`` cells."""
    data = base64.standard_b64encode(_png(image)).decode("ascii")
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [""]
    out = []
    for i, part in enumerate(parts):
        more = int(i < len(parts) - 1)
        keys = f"a=T,f=100,q=2,c={cols},r={rows},m={more}" if i == 0 else f"m={more}"
        out.append(f"{_ESC}_G{keys};{part}{_ST}")
    return "".join(out) + "\n"


def iterm(image: Image.Image, cols: int, rows: int) -> str:
    """iTerm2 inline image (OSC 1337) of ``cols`` x ``rows`` cells."""
    data = _png(image)
    encoded = base64.standard_b64encode(data).decode("ascii")
    return (
        f"{_ESC}]1337;File=inline=1;size={len(data)};width={cols};height={rows};preserveAspectRatio=1:"
        f"{encoded}\x07\n"
    )


def sixel(image: Image.Image, colors: int = 64) -> str:
    """DEC sixel: the image quantised to ``colors``, sent in bands of six pixel rows, runs compressed."""
    paletted = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pixels = np.asarray(paletted)
    height, width = pixels.shape
    palette = np.array((paletted.getpalette() or [])[: 3 * colors]).reshape(-1, 3)
    out = [f'{_ESC}Pq"1;1;{width};{height}']
    for index in np.unique(pixels):
        r, g, b = (round(int(c) * 100 / 255) for c in palette[index])
        out.append(f"#{index};2;{r};{g};{b}")
    weights = (1 << np.arange(6)).reshape(6, 1)
    for top in range(0, height, 6):
        band = pixels[top : top + 6]
        for index in np.unique(band):
            mask = (band == index).astype(np.int64)
            bits = (mask * weights[: len(band)]).sum(axis=0)
            out.append(f"#{index}{_runs(''.join(chr(63 + int(v)) for v in bits))}$")
        out.append("-")
    return "".join(out) + _ST + "\n"


def _runs(text: str) -> str:
    """Sixel run-length encoding: ``!<count><char>`` for runs longer than three."""
    out = []
    for char, group in itertools.groupby(text):
        n = len(list(group))
        out.append(f"!{n}{char}" if n > 3 else char * n)
    return "".join(out)


def half_blocks(image: Image.Image, box: Box) -> str:
    """Two pixels per cell: ``▀`` in the top pixel's colour on the bottom pixel's colour (24-bit SGR)."""
    cols, rows = fit_cells(*image.size, box)
    pixels = np.asarray(image.convert("RGB").resize((cols, rows * 2), Image.Resampling.BOX))
    lines = []
    for y in range(0, rows * 2, 2):
        cells = []
        for (r1, g1, b1), (r2, g2, b2) in zip(pixels[y], pixels[y + 1], strict=True):
            cells.append(f"{_ESC}[38;2;{r1};{g1};{b1};48;2;{r2};{g2};{b2}m▀")
        lines.append("".join(cells) + f"{_ESC}[0m")
    return "\n".join(lines) + "\n"


def clear_images(protocol: Protocol) -> str:
    """What removes the previous image before the next one is drawn (kitty keeps images until told)."""
    return f"{_ESC}_Ga=d,q=2{_ST}" if protocol == "kitty" else ""


def terminal_box(fd: int, reserve_rows: int) -> Box:
    """The terminal's size on ``fd`` less ``reserve_rows`` lines for text, with its cell size in pixels where the
    terminal reports one (sixel needs pixels; kitty and iTerm2 scale to cells themselves)."""
    import fcntl
    import os
    import struct
    import termios

    size = os.get_terminal_size(fd)
    cell_w, cell_h = Box.cell_w, Box.cell_h
    try:
        _, _, xpixel, ypixel = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        if xpixel and ypixel:
            cell_w, cell_h = max(1, xpixel // size.columns), max(1, ypixel // size.lines)
    except OSError:
        pass
    return Box(max(1, size.columns - 1), max(1, size.lines - reserve_rows), cell_w, cell_h)
