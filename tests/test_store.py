"""The SQLite store, on real database files: migrations, constraints, and the queries the pipeline relies on."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from service.store import MIGRATIONS, SchemaTooNewError, Store, StoreError, connect, migrate, schema_version


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "nijifeed.sqlite3"


@pytest.fixture
def store(db_path: Path):
    with Store.open(db_path) as s:
        yield s


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# --- connection and migrations ------------------------------------------------------------------------------------


def test_migrates_an_empty_database_and_records_the_version(db_path: Path) -> None:
    with Store.open(db_path) as s:
        assert db_path.is_file()  # parent directories were created
        assert {"images", "media", "posts", "post_media", "features", "models", "verdicts", "labels", "kv"} <= tables(
            s.conn
        )
        rows = s.conn.execute("SELECT version, applied_at FROM schema_version").fetchall()
        assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        assert all(r["applied_at"] for r in rows)
        assert schema_version(s.conn) == len(MIGRATIONS)


def test_reopening_is_a_no_op(db_path: Path) -> None:
    Store.open(db_path).close()
    with Store.open(db_path) as s:
        assert s.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        assert migrate(s.conn) == len(MIGRATIONS)
        assert s.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


def test_later_migrations_apply_on_top_and_each_one_is_atomic(db_path: Path) -> None:
    conn = connect(db_path)
    try:
        assert migrate(conn) == len(MIGRATIONS)
        v2 = """
            -- a comment; with a semicolon
            ALTER TABLE images ADD COLUMN phash TEXT;
            CREATE INDEX images_phash ON images (phash);
            CREATE TRIGGER images_phash_lower AFTER UPDATE OF phash ON images BEGIN
                UPDATE images SET phash = lower(new.phash) WHERE id = new.id AND new.phash != lower(new.phash);
            END;
        """
        extra = (*MIGRATIONS, v2)
        assert migrate(conn, extra) == len(MIGRATIONS) + 1
        assert "phash" in {r["name"] for r in conn.execute("PRAGMA table_info(images)")}
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'images_phash_lower'").fetchone()

        broken = (*extra, "CREATE TABLE half_done (x);\nSELECT * FROM no_such_table;")
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, broken)
        assert "half_done" not in tables(conn)  # the failed migration left nothing behind
        assert schema_version(conn) == len(extra)
        assert not conn.in_transaction
    finally:
        conn.close()


def test_refuses_a_database_newer_than_the_code(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = connect(db_path)
    conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'future')", (len(MIGRATIONS) + 1,))
    conn.close()
    with pytest.raises(SchemaTooNewError, match="upgrade nijifeed") as info:
        Store.open(db_path)
    assert isinstance(info.value, StoreError)


def test_connection_settings(store: Store) -> None:
    conn = store.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert isinstance(conn.execute("SELECT 1 AS one").fetchone(), sqlite3.Row)


def test_foreign_keys_and_checks_are_enforced(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.put_features(12345, "builtin", np.ones(4, dtype=np.float32))  # no such image
    image = store.add_image(sha(1), 10, 10, 100, "x")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_verdict(image, 99, "2d", 0.9, 0.8, 0.8)  # no such model
    with pytest.raises(sqlite3.IntegrityError):
        store.add_label(image, "maybe", "review")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:
        conn.execute("INSERT INTO media (media_key, kind, status) VALUES ('3_1', 'photo', 'lost')")


# --- images and features ------------------------------------------------------------------------------------------


def test_images_are_deduplicated_by_content_hash(store: Store) -> None:
    first = store.add_image(sha(1), 640, 480, 12345, "x")
    again = store.add_image(sha(1).upper(), 1, 1, 1, "/some/file.png")
    other = store.add_image(sha(2), 10, 10, 100, "/some/file.png")
    assert first == again != other
    assert store.conn.execute("SELECT count(*) FROM images").fetchone()[0] == 2
    row = store.image_by_sha(sha(1))
    assert row is not None
    assert (row["id"], row["width"], row["height"], row["bytes"], row["source"]) == (first, 640, 480, 12345, "x")
    assert row["first_seen"]
    assert store.image_by_sha(sha(3)) is None
    with pytest.raises(ValueError):
        store.add_image("not-a-hash", 1, 1, 1, "x")


def test_features_round_trip_exactly(store: Store) -> None:
    rng = np.random.default_rng(0)
    ids = [store.add_image(sha(i), 1, 1, 1, "x") for i in range(3)]
    vectors = {i: rng.standard_normal(4096).astype(np.float32) for i in ids[:2]}
    for image_id, vector in vectors.items():
        store.put_features(image_id, "i2v", vector)
    store.put_features(ids[0], "builtin", np.arange(8, dtype=np.float64))  # another extractor, stored as float32

    got = store.get_features(ids, "i2v")
    assert set(got) == set(vectors)  # ids[2] has none: absent, not an error
    for image_id, vector in vectors.items():
        assert got[image_id].dtype == np.float32
        assert np.array_equal(got[image_id], vector)
    assert np.array_equal(store.get_features([ids[0]], "builtin")[ids[0]], np.arange(8, dtype=np.float32))
    assert store.get_features([], "i2v") == {}

    replacement = np.full(4096, 0.5, dtype=np.float32)
    store.put_features(ids[0], "i2v", replacement)  # re-extraction replaces
    assert np.array_equal(store.get_features([ids[0]], "i2v")[ids[0]], replacement)
    with pytest.raises(ValueError):
        store.put_features(ids[0], "i2v", np.ones((2, 2)))


def test_get_features_handles_more_ids_than_one_query_binds(store: Store) -> None:
    ids = []
    with store.transaction():
        for i in range(1200):
            image_id = store.add_image(sha(i), 1, 1, 1, "x")
            store.put_features(image_id, "builtin", np.array([i, -i], dtype=np.float32))
            ids.append(image_id)
    got = store.get_features(ids, "builtin")
    assert len(got) == 1200
    assert np.array_equal(got[ids[1199]], np.array([1199, -1199], dtype=np.float32))


# --- models and verdicts ------------------------------------------------------------------------------------------


def test_one_active_model_at_a_time(store: Store) -> None:
    assert store.active_model() is None
    v1 = store.register_model("/m/1.joblib", "i2v", "rf", 0.3, "margin", {"f1": np.float64(0.9), "n": 10})
    v2 = store.register_model(Path("/m/2.joblib"), "i2v", "lr", 0.25, "margin", {})
    assert v2 > v1
    assert store.active_model() is None  # registering does not activate

    store.activate_model(v1)
    active = store.active_model()
    assert active is not None and active["version"] == v1 and active["metrics_json"] == '{"f1": 0.9, "n": 10}'

    store.activate_model(v2)
    assert store.active_model()["version"] == v2  # type: ignore[index]
    assert [(m["version"], m["active"]) for m in store.list_models()] == [(v1, 0), (v2, 1)]

    with pytest.raises(StoreError, match="no model version 999"):
        store.activate_model(999)
    assert store.active_model()["version"] == v2  # type: ignore[index]

    # The partial unique index rejects a second active row, whoever writes it.
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:
        conn.execute("UPDATE models SET active = 1 WHERE version = ?", (v1,))
    assert [m["active"] for m in store.list_models()] == [0, 1]


def test_verdicts_are_idempotent_per_image_and_model(store: Store) -> None:
    image = store.add_image(sha(1), 1, 1, 1, "x")
    v1 = store.register_model("/m/1", "i2v", "rf", 0.3, "margin", {})
    v2 = store.register_model("/m/2", "i2v", "rf", 0.3, "margin", {})
    first = store.add_verdict(image, v1, "uncertain", 0.6, 0.2, 0.2, audit=False)
    again = store.add_verdict(image, v1, "2d", 0.99, 0.98, 0.98, audit=True)  # a re-run after a crash
    assert first == again
    rows = store.conn.execute("SELECT * FROM verdicts WHERE image_id = ?", (image,)).fetchall()
    assert len(rows) == 1 and rows[0]["verdict"] == "uncertain" and rows[0]["audit"] == 0
    assert store.add_verdict(image, v2, "2d", 0.9, 0.8, 0.8, audit=True) != first  # a new model gives a new verdict
    assert store.conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 2


# --- labels -------------------------------------------------------------------------------------------------------


def test_labelling_again_supersedes_and_keeps_history(store: Store) -> None:
    a = store.add_image(sha(1), 1, 1, 1, "x")
    b = store.add_image(sha(2), 1, 1, 1, "x")
    first = store.add_label(a, "2d", "review", author="alice")
    store.add_label(b, "not2d", "folder")
    second = store.add_label(a, "not2d", "review", author="bob")
    third = store.add_label(a, "not2d", "import")

    assert [(int(r["id"]), r["label"]) for r in store.labelled_images()] == [(a, "not2d"), (b, "not2d")]
    history = store.label_history(a)
    assert [r["id"] for r in history] == [first, second, third]
    assert [r["label"] for r in history] == ["2d", "not2d", "not2d"]
    assert [r["author"] for r in history] == ["alice", "bob", None]
    assert [r["superseded_by"] for r in history] == [second, third, None]
    assert store.label_history(999) == []

    with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:  # never two current labels
        conn.execute("UPDATE labels SET superseded_by = NULL WHERE id = ?", (first,))


# --- kv, transactions, concurrency --------------------------------------------------------------------------------


def test_kv(store: Store) -> None:
    assert store.get_kv("since_id") is None
    assert store.get_kv("since_id", "0") == "0"
    store.set_kv("since_id", "1790000000000000000")
    store.set_kv("since_id", "1790000000000000001")
    assert store.get_kv("since_id") == "1790000000000000001"


def test_a_transaction_that_raises_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        image = store.add_image(sha(1), 1, 1, 1, "x")
        store.put_features(image, "builtin", np.ones(3))
        store.add_label(image, "2d", "review")
        store.set_kv("since_id", "42")
        raise RuntimeError("crash between two stages")
    assert not store.conn.in_transaction
    for table in ("images", "features", "labels", "kv"):
        assert store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0

    # A failing inner step rolls back only itself when the caller handles it.
    with store.transaction():
        kept = store.add_image(sha(2), 1, 1, 1, "x")
        with pytest.raises(sqlite3.IntegrityError):
            store.add_verdict(kept, 404, "2d", 1.0, 1.0, 1.0)
    assert store.image_by_sha(sha(2)) is not None
    assert store.conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 0


def test_two_connections_see_committed_data_only(db_path: Path) -> None:
    with Store.open(db_path) as writer, Store.open(db_path) as reader:
        with writer.transaction():
            image = writer.add_image(sha(1), 1, 1, 1, "x")
            writer.set_kv("since_id", "7")
            assert reader.image_by_sha(sha(1)) is None  # not committed yet: invisible, and the reader is not blocked
            assert reader.get_kv("since_id") is None
        row = reader.image_by_sha(sha(1))
        assert row is not None and row["id"] == image
        assert reader.get_kv("since_id") == "7"

        # The other side can write too, and the first sees it.
        reader.add_label(image, "2d", "review")
        assert [(int(r["id"]), r["label"]) for r in writer.labelled_images()] == [(image, "2d")]


def test_a_second_writer_waits_for_the_lock_instead_of_failing(db_path: Path) -> None:
    with Store.open(db_path) as a, Store.open(db_path) as b:
        b.conn.execute("PRAGMA busy_timeout = 50")
        with a.transaction():
            a.set_kv("k", "a")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                b.set_kv("k", "b")  # BEGIN IMMEDIATE cannot take the lock while a holds it
        b.set_kv("k", "b")
        assert a.get_kv("k") == "b"


def test_many_processes_opening_a_new_database_at_once(db_path: Path) -> None:
    # Threads stand in for processes: each has its own connection, and sqlite3 releases the GIL while it waits.
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_and_write(n: int) -> None:
        try:
            start.wait()
            with Store.open(db_path) as s:
                s.add_label(s.add_image(sha(0), 1, 1, 1, "x"), "2d", "review", author=str(n))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store.open(db_path) as s:
        assert s.conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        assert s.conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1
        assert len(s.label_history(1)) == 8 and len(s.labelled_images()) == 1
