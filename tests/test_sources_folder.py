"""FolderSource: new image files become posts; the cursor survives files dropped in with old mtimes."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from service.sources import SourceError
from service.sources.folder import FolderSource, make_cursor, parse_cursor

SETTLE = 0.05  # seconds; files younger than this wait for the next poll


def drop(folder: Path, name: str, source: Path, *, mtime: float | None = None) -> Path:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return target


def settled() -> None:
    time.sleep(SETTLE * 2)


def poll(source: FolderSource, since: str | None):
    pages = list(source.pages(since))
    return pages, [p for page in pages for p in page.posts]


@pytest.fixture
def images(samples) -> list[Path]:
    return sorted((samples / "train" / "2d").glob("*.jpg"))[:6]


def test_new_files_become_posts_and_the_cursor_holds(tmp_path, images):
    for i, image in enumerate(images[:3]):
        drop(tmp_path, f"img{i}.jpg", image)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(images[0].read_bytes())
    (tmp_path / "download.jpg.part").write_bytes(b"half")
    settled()
    source = FolderSource(tmp_path, settle=SETTLE)
    pages, posts = poll(source, None)
    assert sorted(p.text for p in posts) == ["img0.jpg", "img1.jpg", "img2.jpg"]
    post = next(p for p in posts if p.text == "img1.jpg")
    (ref,) = post.media
    sha = hashlib.sha256(images[1].read_bytes()).hexdigest()
    assert ref.media_key == f"file:{sha}" and ref.kind == "file"
    assert ref.url == (tmp_path / "img1.jpg").resolve().as_uri() == post.url
    assert post.id.startswith("file:") and post.created_at.endswith("Z") and pages[0].reads == 0
    cursor = pages[0].newest_id
    assert parse_cursor(cursor) is not None
    # nothing new: one empty page, no cursor to advance to
    pages, posts = poll(source, cursor)
    assert posts == [] and [p.newest_id for p in pages] == [None]


def test_a_file_dropped_later_with_an_old_mtime_is_picked_up(tmp_path, images):
    drop(tmp_path, "zzz-first.jpg", images[0])
    settled()
    source = FolderSource(tmp_path, settle=SETTLE)
    pages, _ = poll(source, None)
    cursor = pages[0].newest_id
    # copied with its times kept (cp -p): an mtime a year older than anything seen, a name that sorts first
    drop(tmp_path, "aaa-old.jpg", images[1], mtime=time.time() - 365 * 86400)
    settled()
    pages, posts = poll(source, cursor)
    assert [p.text for p in posts] == ["aaa-old.jpg"]
    assert posts[0].created_at.startswith(time.strftime("%Y", time.gmtime(time.time() - 365 * 86400)))
    _, again = poll(source, pages[0].newest_id)
    assert again == []


def test_files_still_being_written_wait_for_the_next_poll(tmp_path, images):
    drop(tmp_path, "fresh.jpg", images[0])
    source = FolderSource(tmp_path, settle=60)
    _, posts = poll(source, None)
    assert posts == []
    _, posts = poll(FolderSource(tmp_path, settle=60, clock=lambda: time.time_ns() + 120 * 10**9), None)
    assert [p.text for p in posts] == ["fresh.jpg"]


def test_same_bytes_under_two_names_share_the_media_key(tmp_path, images):
    drop(tmp_path, "a.jpg", images[0])
    drop(tmp_path, "copy-of-a.jpg", images[0])
    settled()
    _, posts = poll(FolderSource(tmp_path, settle=SETTLE), None)
    assert len({p.id for p in posts}) == 2
    assert len({p.media[0].media_key for p in posts}) == 1


def test_pages_newest_first_and_recursive(tmp_path, images):
    for i, image in enumerate(images[:5]):
        drop(tmp_path, f"{i}.jpg", image)
        time.sleep(0.01)
    drop(tmp_path, "sub/deep.png", images[5])
    settled()
    source = FolderSource(tmp_path, settle=SETTLE, page_size=2)
    pages, posts = poll(source, None)
    assert [len(p.posts) for p in pages] == [2, 2, 1]
    assert [p.text for p in posts] == ["4.jpg", "3.jpg", "2.jpg", "1.jpg", "0.jpg"]
    stamps = [parse_cursor(p.newest_id)[0] for p in pages]  # type: ignore[index]
    assert stamps == sorted(stamps, reverse=True)
    _, posts = poll(FolderSource(tmp_path, settle=SETTLE, recursive=True), None)
    assert "sub/deep.png" in {p.text for p in posts} and len(posts) == 6


def test_bad_cursor_rescans_and_missing_folder_is_fatal(tmp_path, images, caplog):
    drop(tmp_path, "a.jpg", images[0])
    settled()
    with caplog.at_level(logging.WARNING):
        _, posts = poll(FolderSource(tmp_path, settle=SETTLE), "1234567890")
    assert len(posts) == 1 and "unreadable cursor" in caplog.text
    with pytest.raises(SourceError) as caught:
        poll(FolderSource(tmp_path / "missing"), None)
    assert caught.value.fatal
    assert parse_cursor(make_cursor(12, "a:b.jpg")) == (12, "a:b.jpg")
