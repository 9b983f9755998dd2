"""The store's schema, as numbered migrations.

``MIGRATIONS[0]`` is schema version 1, ``MIGRATIONS[1]`` version 2, and so on. A migration, once released, is never
edited: a change to the schema is a new script appended to the tuple (``ALTER TABLE ... ADD COLUMN``, a new table,
a new index). ``db.migrate`` applies each missing script in its own transaction and records it in
``schema_version``. Statements are split with SQLite's own tokenizer, so triggers and comments are fine. ``PRAGMA
foreign_keys`` cannot change inside a transaction: a table rebuild uses ``PRAGMA defer_foreign_keys = ON`` instead.

Conventions: timestamps are ISO 8601 text in UTC (``2026-05-09T07:35:25.123+00:00``), so they sort as text; booleans
are ``INTEGER`` 0/1 with a CHECK; every closed vocabulary is a CHECK so a typo in any part fails loudly at the write,
not silently at a later read.
"""

from __future__ import annotations

_V1 = """
-- One row per distinct picture. The content hash is the identity: the same file reached through two posts, two
-- media keys or a folder import is one image, classified once and labelled once.
CREATE TABLE images (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT    NOT NULL UNIQUE CHECK (length(sha256) = 64),
    width       INTEGER,
    height      INTEGER,
    bytes       INTEGER,
    first_seen  TEXT    NOT NULL,
    source      TEXT,               -- where it was first seen: 'x', or a file path
    cache_path  TEXT                -- local copy, if one is kept
);

-- One row per media reference (an X media key, or 'file:<path>'), with the stage it reached. The pipeline resumes
-- from `status`: a crash between two stages leaves the row at the last stage that committed.
CREATE TABLE media (
    id          INTEGER PRIMARY KEY,
    media_key   TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('photo', 'video', 'animated_gif', 'file')),
    url         TEXT,
    preview_url TEXT,
    image_id    INTEGER REFERENCES images (id) ON DELETE SET NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'downloaded', 'feed', 'review', 'dropped', 'failed', 'skipped')),
    reason      TEXT,               -- why it failed or was skipped, short enough for a table cell
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT
);
CREATE INDEX media_status ON media (status);
CREATE INDEX media_image ON media (image_id);

-- Posts as fetched; raw_json keeps the API's answer so a later migration can backfill a field without re-fetching
-- (X only serves the newest 800 posts).
CREATE TABLE posts (
    id            TEXT PRIMARY KEY, -- tweet id, kept as text (64-bit snowflake)
    author_id     TEXT,
    author_name   TEXT,
    author_handle TEXT,
    author_avatar TEXT,
    text          TEXT,
    created_at    TEXT,
    url           TEXT,
    raw_json      TEXT,
    fetched_at    TEXT
);
CREATE INDEX posts_created ON posts (created_at);

-- Which media each post carries, in order. A retweet or quote carries the same media as its original.
CREATE TABLE post_media (
    post_id   TEXT    NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    media_id  INTEGER NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, media_id)
);
CREATE INDEX post_media_media ON post_media (media_id);

-- Feature vectors, float32 little-endian bytes, one per (image, extractor): features from two extractors never mix.
CREATE TABLE features (
    image_id   INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    extractor  TEXT    NOT NULL,
    dim        INTEGER NOT NULL CHECK (dim > 0),
    vector     BLOB    NOT NULL CHECK (length(vector) = 4 * dim),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (image_id, extractor)
);

-- Trained classifiers. `version` is never reused (AUTOINCREMENT), so a verdict's model_version names one model
-- forever. At most one is active: the partial unique index makes a second `active = 1` row impossible.
CREATE TABLE models (
    version      INTEGER PRIMARY KEY AUTOINCREMENT,
    path         TEXT    NOT NULL,
    extractor    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    threshold    REAL,
    score_kind   TEXT,
    metrics_json TEXT,
    created_at   TEXT    NOT NULL,
    active       INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
);
CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active = 1;

-- One verdict per (image, model version). The UNIQUE index leads with image_id, so it also serves lookups by image.
CREATE TABLE verdicts (
    id            INTEGER PRIMARY KEY,
    image_id      INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    model_version INTEGER NOT NULL REFERENCES models (version),
    verdict       TEXT    NOT NULL CHECK (verdict IN ('2d', 'not2d', 'uncertain')),
    p_2d          REAL,
    margin        REAL,
    score         REAL,
    audit         INTEGER NOT NULL DEFAULT 0 CHECK (audit IN (0, 1)),
    created_at    TEXT    NOT NULL,
    UNIQUE (image_id, model_version)
);
CREATE INDEX verdicts_model ON verdicts (model_version, verdict);

-- People's answers. Nothing is overwritten: a new answer for an image is a new row, and the previous current row
-- gets superseded_by = the new row's id. The current label is the one row with superseded_by IS NULL (at most one
-- per image, by the partial unique index). The self-reference is deferred so both rows change in one transaction.
CREATE TABLE labels (
    id            INTEGER PRIMARY KEY,
    image_id      INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    label         TEXT    NOT NULL CHECK (label IN ('2d', 'not2d')),
    source        TEXT    NOT NULL,     -- 'review', 'folder', 'import', ...
    author        TEXT,
    created_at    TEXT    NOT NULL,
    superseded_by INTEGER REFERENCES labels (id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX labels_image ON labels (image_id);
CREATE UNIQUE INDEX labels_one_current ON labels (image_id) WHERE superseded_by IS NULL;

-- Small named values: cursors (since_id), last poll time, and the like.
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_V2 = """
-- Where each image went. One route per image, set once by the pipeline (or later by a label); every media row
-- showing that image mirrors it in media.status, so a repost is answered without classifying again.
ALTER TABLE images ADD COLUMN route TEXT CHECK (route IN ('feed', 'review', 'dropped'));
ALTER TABLE images ADD COLUMN routed_by TEXT CHECK (routed_by IN ('model', 'label', 'auto'));
ALTER TABLE images ADD COLUMN routed_at TEXT;
ALTER TABLE images ADD COLUMN verdict_id INTEGER REFERENCES verdicts (id);
CREATE INDEX images_route ON images (route);

-- Images waiting for a person: the uncertain ones, and an audit sample of confident ones (so the feed's precision
-- can be measured without the bias of labelling only the uncertain band). Resolved rows stay as history.
CREATE TABLE review_queue (
    image_id      INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    reason        TEXT    NOT NULL CHECK (reason IN ('uncertain', 'audit')),
    model_version INTEGER REFERENCES models (version),
    priority      REAL    NOT NULL DEFAULT 0,  -- uncertainty score: larger is asked first
    added_at      TEXT    NOT NULL,
    resolved_at   TEXT,
    resolution    TEXT CHECK (resolution IN ('labelled', 'auto'))
);
CREATE INDEX review_open ON review_queue (resolved_at, priority);

-- One row per poll of a source: what it fetched and what it cost (reads are billed), for `status` and metrics.
CREATE TABLE polls (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    posts       INTEGER NOT NULL DEFAULT 0,
    new_media   INTEGER NOT NULL DEFAULT 0,
    reads       INTEGER NOT NULL DEFAULT 0,
    pages       INTEGER NOT NULL DEFAULT 0,
    gap         INTEGER NOT NULL DEFAULT 0 CHECK (gap IN (0, 1)),
    error       TEXT,
    summary_json TEXT
);
CREATE INDEX polls_started ON polls (started_at);

-- Which post the media came through when it was a retweet or quote of another post.
ALTER TABLE posts ADD COLUMN via TEXT CHECK (via IN ('retweet', 'quote'));
ALTER TABLE posts ADD COLUMN via_id TEXT;
"""

_V3 = """
-- Forwards of feed entries to elsewhere (a repost or bookmark on X, a webhook). One row per (post, forwarder),
-- created in the same transaction that puts the post in the feed, so each entry is forwarded exactly once; a
-- failed delivery is retried with backoff (next_attempt_at), and a crash between sending and recording it is the
-- only window in which a forward can repeat (webhook receivers get an idempotency key for that).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    post_id         TEXT    NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    forwarder       TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    delivered_at    TEXT,
    UNIQUE (post_id, forwarder)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- When a cached image (or its thumbnail) was last served, for the cache's least-recently-used eviction.
ALTER TABLE images ADD COLUMN last_served_at TEXT;
"""

_V4 = """
-- The post a retweet or quote refers to (the source's OriginalPost), in columns: it used to travel only inside
-- raw_json's "original" object, which versions 1 to 3 wrote and which is copied here so old databases keep their
-- originals. raw_json stays the API's own answer, for later backfills.
ALTER TABLE posts ADD COLUMN original_id            TEXT;
ALTER TABLE posts ADD COLUMN original_text          TEXT;
ALTER TABLE posts ADD COLUMN original_url           TEXT;
ALTER TABLE posts ADD COLUMN original_created_at    TEXT;
ALTER TABLE posts ADD COLUMN original_author_id     TEXT;
ALTER TABLE posts ADD COLUMN original_author_name   TEXT;
ALTER TABLE posts ADD COLUMN original_author_handle TEXT;
ALTER TABLE posts ADD COLUMN original_author_avatar TEXT;

-- json_extract fails on malformed JSON, so the CASE keeps it away from rows whose raw_json is not valid.
UPDATE posts SET
    original_id            = json_extract(raw_json, '$.original.id'),
    original_text          = json_extract(raw_json, '$.original.text'),
    original_url           = json_extract(raw_json, '$.original.url'),
    original_created_at    = json_extract(raw_json, '$.original.created_at'),
    original_author_id     = json_extract(raw_json, '$.original.author_id'),
    original_author_name   = json_extract(raw_json, '$.original.author_name'),
    original_author_handle = json_extract(raw_json, '$.original.author_handle'),
    original_author_avatar = json_extract(raw_json, '$.original.author_avatar')
WHERE CASE WHEN json_valid(raw_json) THEN json_type(raw_json, '$.original.id') IN ('text', 'integer') ELSE 0 END;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
"""Schema scripts, oldest first; index i holds schema version i + 1. Append only."""
