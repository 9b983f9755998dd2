"""Images in the terminal: which protocol each terminal gets, and encoders checked by decoding what they write."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from service.review.graphics import Box, detect, fit_cells, half_blocks, iterm, kitty, render, sixel


def picture(width: int = 40, height: int = 30) -> Image.Image:
    """Four flat quadrants: easy to check after any resampling."""
    a = np.zeros((height, width, 3), np.uint8)
    a[: height // 2, : width // 2] = (220, 30, 30)
    a[: height // 2, width // 2 :] = (30, 200, 40)
    a[height // 2 :, : width // 2] = (20, 40, 230)
    a[height // 2 :, width // 2 :] = (250, 250, 250)
    return Image.fromarray(a)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM": "xterm-kitty"}, "kitty"),
        ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, "kitty"),
        ({"TERM": "xterm-ghostty"}, "kitty"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"}, "iterm"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "iterm"),
        ({"TERM": "foot"}, "sixel"),
        ({"TERM": "mlterm"}, "sixel"),
        ({"TERM": "xterm-256color"}, "blocks"),
        ({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-1/default,1,0"}, "blocks"),  # tmux passes no graphics
        ({"TERM": "screen-256color"}, "blocks"),
        ({"TERM": "dumb"}, "none"),
        ({}, "none"),
    ],
)
def test_protocol_detection(env, expected):
    assert detect(env) == expected


def test_the_setting_wins_over_detection():
    assert detect({"TERM": "xterm-kitty"}, "sixel") == "sixel"
    assert detect({"TERM": "dumb"}, "blocks") == "blocks"


def test_fit_keeps_the_aspect_ratio_with_cells_twice_as_tall_as_wide():
    assert fit_cells(400, 200, Box(80, 40)) == (80, 20)  # width-bound
    assert fit_cells(200, 400, Box(80, 20)) == (20, 20)  # height-bound: 20 rows = 40 half-cells


SGR = re.compile(r"\x1b\[38;2;(\d+);(\d+);(\d+);48;2;(\d+);(\d+);(\d+)m▀")


def test_half_blocks_decode_back_to_the_picture():
    text = half_blocks(picture(), Box(20, 10))
    lines = text.rstrip("\n").split("\n")
    pixels = []
    for line in lines:
        assert line.endswith("\x1b[0m")  # colours reset at every line end
        cells = [tuple(map(int, m.groups())) for m in SGR.finditer(line)]
        pixels.append([c[:3] for c in cells])
        pixels.append([c[3:] for c in cells])
    decoded = np.array(pixels, dtype=int)
    assert decoded.shape == (16, 20, 3)  # 40x30 fitted into 20 columns: 20 x 15 px, 8 whole rows of cells
    expected = np.asarray(picture().resize((20, 16), Image.Resampling.BOX), dtype=int)
    assert np.abs(decoded - expected).max() <= 1
    assert tuple(decoded[0, 0]) == (220, 30, 30) and tuple(decoded[-1, -1]) == (250, 250, 250)


def _png_of(payload: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.standard_b64decode(payload)))


def test_kitty_sends_a_png_in_chunks_placed_in_cells():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    text = kitty(big, 30, 15)
    chunks = re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", text)
    assert len(chunks) > 1 and all(len(data) <= 4096 for _, data in chunks)
    assert chunks[0][0].startswith("a=T,f=100,") and "c=30,r=15" in chunks[0][0]
    assert [keys.split("m=")[1] for keys, _ in chunks] == ["1"] * (len(chunks) - 1) + ["0"]
    image = _png_of("".join(data for _, data in chunks))
    assert image.size == (300, 300) and np.array_equal(np.asarray(image), np.asarray(big))


def test_iterm_sends_the_file_inline():
    text = iterm(picture(), 12, 5)
    pattern = r"\x1b\]1337;File=inline=1;size=(\d+);width=12;height=5;preserveAspectRatio=1:([^\x07]+)\x07\n"
    match = re.fullmatch(pattern, text)
    assert match
    assert int(match.group(1)) == len(base64.standard_b64decode(match.group(2)))
    assert _png_of(match.group(2)).size == (40, 30)


def decode_sixel(text: str) -> np.ndarray:
    """A small sixel decoder (raster attributes, RGB colour registers, repeats, $ and -), for checking."""
    body = re.fullmatch(r'\x1bPq"1;1;(\d+);(\d+)(.*)\x1b\\\n', text, re.DOTALL)
    assert body, "not a DCS q sequence with raster attributes"
    width, height, data = int(body.group(1)), int(body.group(2)), body.group(3)
    out = np.zeros((height, width, 3), int)
    colours: dict[int, tuple[int, int, int]] = {}
    colour, x, top = 0, 0, 0
    for token in re.finditer(r"#(\d+);2;(\d+);(\d+);(\d+)|#(\d+)|!(\d+)(.)|([?-~])|(\$)|(-)", data):
        define, select, count, repeated, single, cr, lf = (token.group(1), token.group(5), token.group(6),
                                                           token.group(7), token.group(8), token.group(9),
                                                           token.group(10))
        if define:
            colours[int(define)] = tuple(round(int(token.group(i)) * 255 / 100) for i in (2, 3, 4))
        elif select:
            colour = int(select)
        elif cr:
            x = 0
        elif lf:
            x, top = 0, top + 6
        else:
            char, n = (repeated, int(count)) if count else (single, 1)
            bits = ord(char) - 63
            for _ in range(n):
                for bit in range(6):
                    if bits >> bit & 1 and top + bit < height:
                        out[top + bit, x] = colours[colour]
                x += 1
    return out


def test_sixel_decodes_back_to_the_picture():
    image = picture(40, 30)
    decoded = decode_sixel(sixel(image))
    assert decoded.shape == (30, 40, 3)
    assert np.abs(decoded - np.asarray(image, dtype=int)).max() <= 3  # palette entries in sixel's 0-100 scale


def test_sixel_compresses_runs():
    text = sixel(Image.new("RGB", (200, 12), (10, 20, 30)))
    assert "!200~" in text  # one run per band instead of 200 characters


def test_render_fits_each_protocol_into_the_box():
    image = picture(400, 300)
    box = Box(40, 20, cell_w=8, cell_h=16)
    assert render(image, "none", box) == ""
    assert "c=40,r=15" in render(image, "kitty", box)
    assert "width=40;height=15" in render(image, "iterm", box)
    assert decode_sixel(render(image, "sixel", box)).shape == (240, 320, 3)  # 40 cells x 8 px, aspect kept
    assert len(render(image, "blocks", box).rstrip("\n").split("\n")) == 15
