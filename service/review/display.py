"""How an item's image reaches the person: drawn in the terminal, or opened in a browser or viewer.

The image is always the local cached copy (the post may be gone, and no network is needed to review).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import webbrowser
from collections.abc import Callable, Mapping
from pathlib import Path

from service.features.images import ImageError, ImageLimits, load_image
from service.media.cache import ImageCache
from service.review import graphics
from service.review.queue import ReviewItem
from service.terminal import clean

TEXT_ROWS = 9  # lines the session prints under the image


def drawer(
    cache_dir: Path, protocol: graphics.Protocol, limits: ImageLimits, fd: int
) -> Callable[[ReviewItem], str]:
    """``draw(item)``: the item's image sized to the terminal on ``fd`` (measured at each draw, so a resized
    window is followed), in ``protocol``."""

    def draw(item: ReviewItem) -> str:
        if protocol == "none":
            return ""
        path = file_of(item, cache_dir)
        if path is None:
            return "(the image is no longer cached)\n"
        try:
            image = load_image(path, limits=limits, draft_size=1024, name=str(path))
        except ImageError as exc:
            return f"(cannot show the image: {clean(exc.reason)})\n"
        return graphics.clear_images(protocol) + graphics.render(image, protocol, graphics.terminal_box(fd, TEXT_ROWS))

    return draw


def file_of(item: ReviewItem, cache_dir: Path) -> Path | None:
    """The cached copy of the item's image, if it is still there."""
    return ImageCache(cache_dir).local_copy(item.sha256, item.cache_path)


def opener(cache_dir: Path, env: Mapping[str, str]) -> Callable[[ReviewItem], str]:
    """`o`: the cached file, copied with an extension a viewer recognises, opened by the browser or viewer.

    Without a display (a bare SSH session) a console browser would take over the terminal mid-review, so the
    path is shown instead; set BROWSER to choose the program.
    """
    workdir: list[Path] = []  # made on first use: most sessions never open a file

    def open_item(item: ReviewItem) -> str:
        source = file_of(item, cache_dir)
        if source is None:
            target = item.url
        else:
            workdir[:] = workdir or [Path(tempfile.mkdtemp(prefix="nijifeed-review-"))]
            target = str(workdir[0] / f"{item.image_id}{extension(source)}")
            shutil.copyfile(source, target)
        if target is None:
            return "the image is no longer cached and has no URL"
        if not (env.get("BROWSER") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or _is_mac()):
            return f"no display to open it on: {target}"
        uri = Path(target).as_uri() if source is not None else target
        return f"opened {target}" if webbrowser.open(uri) else f"could not open {target}"

    return open_item


def extension(path: Path) -> str:
    """``.jpg``, ``.png``... from the file's own header (cached copies are named by hash, without one)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            fmt = (image.format or "").lower()
    except Exception:  # noqa: BLE001 - any unreadable header just gets no extension
        return ""
    return {"jpeg": ".jpg", "mpo": ".jpg"}.get(fmt, f".{fmt}" if fmt else "")


def _is_mac() -> bool:
    return sys.platform == "darwin"
