"""New image files in a folder as posts: one post per file, its one medium the file itself.

Cursor semantics (``since_id``, opaque to the pipeline): ``"fs1:<stamp_ns>:<name>"``, the newest file seen, where
a file's *stamp* is ``max(st_mtime_ns, st_ctime_ns)``. A file is new when ``(stamp, name) > cursor``. The ctime
half matters: on POSIX systems ``st_ctime`` is the inode's change time, set to *now* whenever a file is created,
copied, moved or renamed into the folder, or has its times set (``cp -p``, ``rsync -t``, unzip, ``os.utime``).
So a file dropped in later is picked up even when its mtime is older than everything seen before. Files whose
stamp is less than ``settle`` seconds old are left for the next poll (they may still be being written), which
also means every file created after a poll has a stamp above that poll's cursor. (On Windows ``st_ctime`` is
the creation time, which a move keeps: there a file moved in with old times is missed; copy instead.)

Posts: ``id`` ``"file:<20 hex>"`` from the file's name and content (the same file seen again is the same post;
the store ignores it), ``url``/media ``url`` a ``file://`` URI, ``created_at`` the mtime (ISO, ms, Z), ``text``
the file name; media ``MediaRef("file:<sha256>", "file", url)`` (the same bytes under two names share a key).
Pages are newest first; ``newest_id`` is the cursor for the newest file on the page. Nothing here is billed:
``Page.reads`` is 0. Hidden files, temporary/partial downloads and other extensions are ignored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.sources import MediaRef, Page, Post, SourceError
from service.words import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

_PARTIAL = (".part", ".partial", ".crdownload", ".tmp", ".download", "~")
CURSOR_PREFIX = "fs1:"


@dataclass(frozen=True, order=True)
class _Entry:
    stamp: int
    name: str
    path: Path
    mtime_ns: int
    size: int


def make_cursor(stamp_ns: int, name: str) -> str:
    return f"{CURSOR_PREFIX}{stamp_ns}:{name}"


def parse_cursor(cursor: str | None) -> tuple[int, str] | None:
    """``(stamp_ns, name)`` from a cursor, or None for no/unreadable cursor."""
    if not cursor or not cursor.startswith(CURSOR_PREFIX):
        return None
    stamp, sep, name = cursor[len(CURSOR_PREFIX) :].partition(":")
    if not sep or not stamp.isdigit():
        return None
    return int(stamp), name


class FolderSource:
    """Image files in ``folder`` (optionally its subfolders) that are new since the cursor."""

    name = "folder"

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        recursive: bool = False,
        page_size: int = 100,
        settle: float = 1.0,
        extensions: frozenset[str] = IMAGE_SUFFIXES,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.recursive = recursive
        self.page_size = max(1, page_size)
        self.settle_ns = int(settle * 1e9)
        self.extensions = frozenset(e.lower() for e in extensions)
        self._clock = clock

    def __repr__(self) -> str:
        return f"FolderSource({str(self.folder)!r}, recursive={self.recursive})"

    def pages(self, since_id: str | None) -> Iterator[Page]:
        cursor = parse_cursor(since_id)
        if since_id and cursor is None:
            log.warning("folder source: unreadable cursor %r; rescanning everything (known files are skipped)",
                        since_id)
        if not self.folder.is_dir():
            raise SourceError(f"folder source: {self.folder} is not a folder", fatal=True)
        entries = sorted(self._scan(cursor), reverse=True)
        if not entries:
            yield Page(posts=[], newest_id=None, reads=0)
            return
        for start in range(0, len(entries), self.page_size):
            chunk = entries[start : start + self.page_size]
            posts = []
            for entry in chunk:
                post = self._post(entry)
                if post is not None:
                    posts.append(post)
            yield Page(posts=posts, newest_id=make_cursor(chunk[0].stamp, chunk[0].name), reads=0)

    def _scan(self, cursor: tuple[int, str] | None) -> Iterator[_Entry]:
        horizon = self._clock() - self.settle_ns
        pending = 0
        walker = os.walk(self.folder) if self.recursive else [(str(self.folder), [], None)]
        for root, dirs, _files in walker:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            try:
                scanned = list(os.scandir(root))
            except OSError as exc:
                log.warning("folder source: cannot list %s: %s", root, exc.strerror or exc)
                continue
            for item in scanned:
                name = item.name
                if name.startswith(".") or name.lower().endswith(_PARTIAL):
                    continue
                if os.path.splitext(name)[1].lower() not in self.extensions:
                    continue
                try:
                    if not item.is_file():
                        continue
                    st = item.stat()
                except OSError:
                    continue
                rel = os.path.relpath(item.path, self.folder).replace(os.sep, "/")
                stamp = max(st.st_mtime_ns, st.st_ctime_ns)
                if cursor is not None and (stamp, rel) <= cursor:
                    continue
                if stamp > horizon:
                    pending += 1
                    continue
                yield _Entry(stamp, rel, Path(item.path), st.st_mtime_ns, st.st_size)
        if pending:
            log.info("folder source: %d file(s) still settling; left for the next poll", pending)

    def _post(self, entry: _Entry) -> Post | None:
        digest = hashlib.sha256()
        try:
            with entry.path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            log.warning("folder source: cannot read %s: %s", entry.path, exc.strerror or exc)
            return None
        sha = digest.hexdigest()
        post_id = "file:" + hashlib.sha256(f"{entry.name}\0{sha}".encode()).hexdigest()[:20]
        uri = entry.path.resolve().as_uri()
        ms = entry.mtime_ns // 1_000_000
        created = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return Post(
            id=post_id,
            text=entry.name,
            created_at=f"{created}{ms % 1000:03d}Z",
            url=uri,
            media=(MediaRef(media_key=f"file:{sha}", kind="file", url=uri),),
            raw={"path": str(entry.path), "name": entry.name, "size": entry.size, "mtime_ns": entry.mtime_ns},
        )


__all__ = ["FolderSource", "make_cursor", "parse_cursor"]
