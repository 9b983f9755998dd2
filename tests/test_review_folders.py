"""The folder workflow: export the queue, sort the files by hand, import the answers; strangers are reported."""

from __future__ import annotations

import json
import shutil

from reviewkit import PLAN

from service.review.exchange import export_queue, import_answers, parse_name


def test_export_then_import_round_trips_through_the_cli(world, tmp_path, cli):
    out = tmp_path / "export"
    result = cli("review", "export", out)
    assert "6 images written" in result.stdout
    files = sorted(p for p in out.iterdir() if p.is_file() and p.suffix == ".png")
    assert len(files) == 6 and (out / "README.txt").is_file() and (out / "2d").is_dir() and (out / "not2d").is_dir()
    ids = {parse_name(p.name)[0]: p for p in files}
    assert set(ids) == {i for i, (v, _, audit) in zip(world.images, PLAN, strict=True) if v == "uncertain" or audit}
    assert all(p.read_bytes() == world.data[i] for i, p in ids.items())  # the very bytes: changes are detectable

    a, b, c = world.images[0], world.images[1], world.images[3]
    shutil.move(ids[a], out / "2d")
    shutil.move(ids[b], out / "not2d")
    shutil.move(ids[c], out / "not2d")
    result = cli("review", "import", out)
    assert "imported 3 answers (1 2D, 2 not 2D)" in result.stdout and "3 not sorted yet" in result.stdout
    assert world.store.current_label(a) == "2d" and world.route(a) == "feed"
    assert world.store.current_label(b) == "not2d" and world.route(b) == "dropped"
    assert world.store.current_label(c) == "not2d" and world.route(c) == "dropped"
    assert {r["source"] for r in world.store.label_history(a)} == {"import"}
    assert world.store.undo_journal() == []  # imports are not on the interactive undo stack

    # importing again changes nothing; exporting again skips what waits in 2d/ and not2d/
    assert "imported 0 answers" in cli("review", "import", out).stdout
    assert len(world.store.label_history(a)) == 1
    again = cli("review", "export", out).stdout
    assert "3 images written" in again
    listed = json.loads(cli("review", "list", "--json").stdout)
    assert len(listed) == 3


def test_unknown_changed_and_conflicting_files_are_reported_and_not_used(world, tmp_path):
    out = tmp_path / "export"
    export_queue(world.store, out, cache_dir=world.cache_dir)
    files = {parse_name(p.name)[0]: p for p in out.iterdir() if p.suffix == ".png"}
    a, b, c = world.images[0], world.images[1], world.images[2]
    # a stranger's picture, a renamed copy, a name pointing at a missing image, and a file that is not an image
    (out / "2d" / "holiday.jpg").write_bytes(b"\xff\xd8not ours")
    shutil.copyfile(files[a], out / "2d" / "my favourite.png")
    (out / "not2d" / "999999_0123456789ab.png").write_bytes(world.data[a])
    (out / "not2d" / "notes.txt").write_text("hello")
    # a changed file: same name, other content (re-saved by an editor)
    changed = out / "2d" / files[b].name
    changed.write_bytes(world.data[b][:-12] + b"edited-bytes")
    files[b].unlink()
    # a conflict: the same image in both folders
    shutil.copyfile(files[c], out / "2d" / files[c].name)
    shutil.move(files[c], out / "not2d" / files[c].name)
    # and one good answer
    shutil.move(files[a], out / "2d" / files[a].name)

    result = import_answers(world.store, out)
    assert dict(result.labelled) == {"2d": 1}
    assert {p.name for p in result.unknown} == {"holiday.jpg", "my favourite.png", "999999_0123456789ab.png",
                                                "notes.txt"}
    assert [p.name for p in result.changed] == [changed.name]
    assert sorted(p.parent.name for p in result.conflicts) == ["2d", "not2d"]
    assert world.store.current_label(a) == "2d"
    assert world.store.current_label(b) is None and world.store.current_label(c) is None  # never guessed


def test_import_reports_with_a_failing_exit_status(world, tmp_path, cli):
    out = tmp_path / "export"
    cli("review", "export", out)
    (out / "2d" / "stranger.png").write_bytes(b"x")
    result = cli("review", "import", out, ok=False)
    assert result.exit_code == 1
    assert "unknown" in result.output and "stranger.png" in result.output


def test_import_needs_the_answer_folders(world, tmp_path, cli):
    result = cli("review", "import", tmp_path / "nowhere", ok=False)
    assert result.exit_code == 1 and "2d/ and not2d/" in result.output
