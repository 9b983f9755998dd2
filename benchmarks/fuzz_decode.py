"""Fuzz the one decode path: mutated small JPEG, PNG, WebP and GIF files must decode to RGB or raise ``ImageError``.

    python benchmarks/fuzz_decode.py SECONDS [--seed N] [--out DIR]

Each input is one of ``seeds()`` with one to four mutations (``MUTATIONS``: bit flips, byte overwrites, truncation,
splices of another seed's bytes, deletions, duplicated runs). Prints the inputs tried, the outcomes (decoded,
refused by reason, and anything else, which is a bug), the slowest decode and the peak RSS. An input whose decode
raises something else is written to DIR; one that takes longer than 10 s is written there too and the run stops
(exit 3), so a hang leaves its input behind; so is any input whose decode raised the peak RSS by more than
``RSS_JUMP_MB`` (an allocation the byte bound should have stopped). Exit status 1 when any input escaped the guard.

The suite runs the same mutations as a property-based test (``tests/test_decode_fuzz.py``, bounded in time).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import random
import re
import resource
import sys
import threading
import time
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script beside the package
    sys.path.insert(0, str(ROOT))

from service.features.images import ImageError, decode_image  # noqa: E402

HANG_SECONDS = 10.0
RSS_JUMP_MB = 64.0


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@cache
def seeds() -> dict[str, bytes]:
    """Small valid files of every accepted format, in the modes and variants the decoder has separate paths for."""
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8))
    grey16 = Image.fromarray((rng.integers(0, 65535, (16, 16))).astype(np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.new("P", (16, 16), i) for i in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    gif_buffer = io.BytesIO()
    frames[0].save(gif_buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, transparency=0)
    return {
        "jpeg": _encode(rgb, "JPEG", quality=80),
        "jpeg-progressive-exif": _encode(rgb, "JPEG", quality=70, progressive=True, exif=exif.tobytes()),
        "jpeg-grey": _encode(rgb.convert("L"), "JPEG"),
        "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
        "png-rgb": _encode(rgb, "PNG"),
        "png-rgba": _encode(rgba, "PNG"),
        "png-palette": _encode(rgb.quantize(16), "PNG", transparency=0),
        "png-grey16": _encode(grey16, "PNG"),
        "png-la": _encode(rgba.convert("LA"), "PNG"),
        "webp-lossy": _encode(rgb, "WEBP", quality=60),
        "webp-lossless-alpha": _encode(rgba, "WEBP", lossless=True),
        "gif-animated": gif_buffer.getvalue(),
    }


Mutation = Callable[[random.Random, bytes], bytes]


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def overwrite(rng: random.Random, data: bytes) -> bytes:
    """Bytes that parsers treat specially (lengths, markers) written over a short run."""
    out = bytearray(data)
    at = rng.randrange(len(out))
    value = rng.choice([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xd8",
                        b"\xff\xda", bytes([rng.randrange(256)])])
    out[at : at + len(value)] = value
    return bytes(out[: len(data)] if len(out) > len(data) else out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(1, len(data))] if len(data) > 1 else data


def splice(rng: random.Random, data: bytes) -> bytes:
    """A run of another seed's bytes (or of this one's) put in at a random place."""
    donor = rng.choice(list(seeds().values()))
    start = rng.randrange(len(donor))
    piece = donor[start : start + rng.randint(1, 64)]
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at + (len(piece) if rng.random() < 0.5 else 0) :]


def delete(rng: random.Random, data: bytes) -> bytes:
    if len(data) < 2:
        return data
    at = rng.randrange(len(data) - 1)
    return data[:at] + data[at + rng.randint(1, min(32, len(data) - at - 1)) :]


def duplicate(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    piece = data[at : at + rng.randint(1, 128)]
    return data[:at] + piece * rng.randint(2, 4) + data[at:]


MUTATIONS: dict[str, Mutation] = {
    "flip": flip_bits, "overwrite": overwrite, "truncate": truncate, "splice": splice, "delete": delete,
    "duplicate": duplicate,
}


def mutate(rng: random.Random, data: bytes, steps: int) -> bytes:
    for _ in range(steps):
        data = MUTATIONS[rng.choice(list(MUTATIONS))](rng, data)
        if not data:
            data = b"\x00"
    return data


def outcome(data: bytes) -> str:
    """``decoded``, ``refused: <kind of reason>``, or ``ESCAPED: <exception type>`` (a bug)."""
    try:
        decoded = decode_image(data, draft_size=16)
    except ImageError as exc:
        return "refused: " + _reason_kind(exc.reason)
    except Exception as exc:  # noqa: BLE001 - what the fuzzer is looking for
        return f"ESCAPED: {type(exc).__name__}"
    if decoded.image.mode != "RGB":
        return f"ESCAPED: mode {decoded.image.mode}"
    return "decoded"


def _reason_kind(reason: str) -> str:
    """The reason without its details (sizes, offsets), so outcomes can be counted."""
    return re.split(r"[(:]", reason, maxsplit=1)[0].strip()


def peak_rss_mb() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    except (OSError, AttributeError):
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class Watchdog:
    """Writes the current input to ``out`` and ends the process when one decode runs past ``HANG_SECONDS``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.current: bytes | None = None
        self.started = 0.0
        self.lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True).start()

    def begin(self, data: bytes) -> None:
        with self.lock:
            self.current, self.started = data, time.monotonic()

    def end(self) -> None:
        with self.lock:
            self.current = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                stuck = self.current is not None and time.monotonic() - self.started > HANG_SECONDS
                data = self.current
            if stuck and data is not None:
                path = save(self.out, "hang", data)
                print(f"HANG: a decode ran past {HANG_SECONDS:.0f} s; input written to {path}", flush=True)
                os._exit(3)


def save(out: Path, kind: str, data: bytes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", type=float)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-decode-findings"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Pillow warns about many broken files while refusing them
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    corpus = seeds()
    watchdog = Watchdog(args.out)
    counts: collections.Counter[str] = collections.Counter()
    by_seed: collections.Counter[str] = collections.Counter()
    slowest, slowest_ms = b"", 0.0
    escaped = 0
    jump_mb, peak = 0.0, peak_rss_mb()
    print(f"seed {seed}; {len(corpus)} seed files ({', '.join(corpus)}); rss at start {peak_rss_mb():.0f} MB")
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        name = rng.choice(list(corpus))
        data = mutate(rng, corpus[name], rng.randint(1, 4))
        watchdog.begin(data)
        t0 = time.perf_counter()
        result = outcome(data)
        elapsed = (time.perf_counter() - t0) * 1000
        watchdog.end()
        counts[result] += 1
        by_seed[name] += 1
        if elapsed > slowest_ms:
            slowest, slowest_ms = data, elapsed
        now = peak_rss_mb()
        if now - peak > jump_mb:
            jump_mb = now - peak
            if jump_mb > RSS_JUMP_MB:
                print(f"peak RSS rose {jump_mb:.0f} MB in one decode ({result}): written to "
                      f"{save(args.out, 'rss', data)}", flush=True)
        peak = now
        if result.startswith("ESCAPED"):
            escaped += 1
            print(f"{result}: written to {save(args.out, 'escaped', data)}", flush=True)
    took = time.monotonic() - started
    total = sum(counts.values())
    print(f"inputs tried: {total} in {took:.0f} s ({total / took:.0f}/s)")
    for result, n in counts.most_common():
        print(f"  {n:8d}  {result}")
    print(f"escaped the guard: {escaped}")
    print(f"slowest decode: {slowest_ms:.1f} ms ({len(slowest)} bytes)")
    print(f"largest rise of the peak RSS in one decode: {jump_mb:.1f} MB")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    sys.exit(1 if escaped else 0)


if __name__ == "__main__":
    main()
