"""Property: mutated bytes of small valid JPEG, PNG, WebP and GIF files either decode to RGB or raise ``ImageError``
— never another exception, never a hang. Bounded for the suite; ``benchmarks/fuzz_decode.py SECONDS`` runs the
same mutations for as long as asked."""

from __future__ import annotations

import random
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks are scripts beside the package, not part of it
    sys.path.insert(0, str(ROOT))

from benchmarks.fuzz_decode import MUTATIONS, seeds  # noqa: E402
from service.features.images import ImageError, decode_image  # noqa: E402

SEEDS = seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed file with one to four mutations; each mutation's choices come from a seed hypothesis draws, so a
    failure shrinks to few, simple mutations and replays exactly."""
    data = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(sorted(MUTATIONS)))
        data = MUTATIONS[kind](random.Random(draw(st.integers(0, 2**32 - 1))), data) or b"\x00"
    return data


@st.composite
def raw_edits(draw: st.DrawFn) -> bytes:
    """Edits hypothesis chooses byte by byte: overwrite a run, then cut the file at a chosen length."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    at = draw(st.integers(0, len(data) - 1))
    patch = draw(st.binary(min_size=1, max_size=12))
    data[at : at + len(patch)] = patch
    return bytes(data[: draw(st.integers(1, len(data)))])


def decodes_or_refuses(data: bytes) -> None:
    try:
        decoded = decode_image(data, draft_size=16)
    except ImageError as exc:
        assert exc.reason
        return
    assert decoded.image.mode == "RGB"
    assert decoded.image.size[0] >= 1 and decoded.image.size[1] >= 1


FUZZ = settings(
    max_examples=8000,
    deadline=timedelta(seconds=5),  # a file this small that takes this long to decode is a hang in the making
    derandomize=True,  # the same inputs on every run: the suite stays repeatable; the benchmark explores
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about some broken files while refusing them
@FUZZ
@given(mutated())
def test_mutated_images_decode_or_are_refused(data):
    decodes_or_refuses(data)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(FUZZ, max_examples=4000)
@given(raw_edits())
def test_edited_images_decode_or_are_refused(data):
    decodes_or_refuses(data)


def test_every_seed_decodes():
    for name, data in SEEDS.items():
        assert decode_image(data).image.mode == "RGB", name
