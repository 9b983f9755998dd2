"""Decode + builtin feature extraction speed on the bundled samples: prints ms per image.

    python benchmarks/extract_speed.py [--repeats 5] [DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from service.features.builtin import BuiltinExtractor
from service.features.images import list_images, load_image

SAMPLES = Path(__file__).resolve().parent.parent / "service" / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=SAMPLES)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    extractor = BuiltinExtractor()
    paths = list_images(args.folder)
    decode, extract = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        images = [load_image(p, draft_size=extractor.working_size) for p in paths]
        decoded = time.perf_counter()
        extractor.extract(images)
        done = time.perf_counter()
        decode.append((decoded - started) / len(paths))
        extract.append((done - decoded) / len(paths))
    print(f"{len(paths)} images from {args.folder}, {args.repeats} repeats, {extractor.name} ({extractor.dim}-d)")
    print(f"decode:  {min(decode) * 1000:.2f} ms/image (best of {args.repeats})")
    print(f"extract: {min(extract) * 1000:.2f} ms/image (best of {args.repeats})")


if __name__ == "__main__":
    main()
