"""The label store's SQLite schema (version 2), its append-only triggers, and the migration from version 1.

Schema version 2 added attempts, retractions, training uses and revocations; a version-1 file is migrated in place,
in the caller's transaction, when it is opened (every row and id kept). Opening a version-2 file writes nothing, so
the file stays byte-identical.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

SCHEMA_VERSION = "2"
_ANSWERS_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY,
    comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
    labeler TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    best INTEGER,
    ranking TEXT,
    shown_order TEXT,
    skipped INTEGER NOT NULL CHECK (skipped IN (0, 1)),
    shown_at REAL,
    answered_at REAL NOT NULL,
    UNIQUE (comparison_id, labeler, attempt),
    CHECK ((skipped = 1 AND best IS NULL AND ranking IS NULL) OR (skipped = 0 AND best IS NOT NULL))
);
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    completions TEXT NOT NULL,
    k INTEGER NOT NULL CHECK (k >= 2),
    task TEXT,
    round INTEGER,
    policy TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labelers (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reissued_links (
    token TEXT PRIMARY KEY,
    labeler TEXT NOT NULL REFERENCES labelers(name),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    token TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY,
    comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
    labeler TEXT NOT NULL REFERENCES labelers(name),
    created REAL NOT NULL,
    UNIQUE (comparison_id, labeler)
);
""" + _ANSWERS_TABLE.format(name="answers") + """CREATE TABLE IF NOT EXISTS retractions (
    answer_id INTEGER PRIMARY KEY REFERENCES answers(id),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS training_uses (
    id INTEGER PRIMARY KEY,
    purpose TEXT NOT NULL,
    round INTEGER,
    task TEXT,
    last_answer_id INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_round ON comparisons(round);
CREATE INDEX IF NOT EXISTS assignments_labeler ON assignments(labeler);
CREATE INDEX IF NOT EXISTS answers_labeler ON answers(labeler);
CREATE VIEW IF NOT EXISTS live_answers AS SELECT * FROM answers WHERE id NOT IN (SELECT answer_id FROM retractions);
CREATE VIEW IF NOT EXISTS links AS
    SELECT name AS labeler, token, created FROM labelers UNION ALL SELECT labeler, token, created FROM reissued_links;
"""
_APPEND_ONLY = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the label store is append-only: {op} on {table} refused'); END;\n"
    for table in ("comparisons", "labelers", "reissued_links", "revocations", "assignments", "answers",
                  "retractions", "training_uses")
    for op in ("UPDATE", "DELETE")
)
_ANSWER_COPY_COLUMNS = "id, comparison_id, labeler, best, ranking, shown_order, skipped, shown_at, answered_at"


def create_or_migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the database open in `db` (inside a write transaction) to the current schema: create it when new,
    migrate a version-1 file, refuse a newer one; then make sure the store's secrets exist."""
    # Checked inside the write transaction, so two processes opening an old file migrate it once.
    has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    version = has_meta and db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if version and version[0] == "1":
        _migrate_from_v1(db)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
    elif version and version[0] != SCHEMA_VERSION:
        raise ValueError(f"{path} has label-store schema version {version[0]}; this ziegler-trl reads "
                         f"versions 1 and {SCHEMA_VERSION} (a newer ziegler-trl wrote it?)")
    for statement in (_SCHEMA + _APPEND_ONLY).split(";\n"):
        if statement.strip():
            db.execute(statement)
    # INSERT OR IGNORE writes nothing to an open store: opening it leaves the file byte-identical.
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    db.execute("INSERT OR IGNORE INTO meta VALUES ('admin_token', ?)", (secrets.token_urlsafe(18),))
    db.execute("INSERT OR IGNORE INTO meta VALUES ('order_secret', ?)", (secrets.token_hex(16),))


def _migrate_from_v1(db: sqlite3.Connection) -> None:
    """Version 1 made (comparison, labeler) unique in `answers`; version 2 makes it (comparison, labeler,
    attempt). SQLite cannot change a table's constraints, so the table is rebuilt: every row is copied with its
    id as attempt 0, the old table dropped (DROP fires no DELETE trigger) and the copy renamed. The caller's
    transaction makes it all or nothing; nothing references `answers` in version 1."""
    db.execute(_ANSWERS_TABLE.format(name="answers_v2").rstrip().rstrip(";"))
    db.execute(f"INSERT INTO answers_v2 ({_ANSWER_COPY_COLUMNS}, attempt) "
               f"SELECT {_ANSWER_COPY_COLUMNS}, 0 FROM answers")
    (before,), = db.execute("SELECT COUNT(*) FROM answers")
    (after,), = db.execute("SELECT COUNT(*) FROM answers_v2")
    if before != after:  # cannot happen with a sound file; refuse rather than drop a row
        raise RuntimeError(f"label-store migration copied {after} of {before} answers; the file is unchanged")
    db.execute("DROP TABLE answers")
    db.execute("ALTER TABLE answers_v2 RENAME TO answers")
