"""The journal's tables, their migrations and the checks that a file is our journal.

Owns ``user_version`` (the schema version) and ``application_id`` (``CAJ1``): a new file is
stamped and migrated to ``SCHEMA_VERSION`` in one transaction; a foreign database, or one newer
than this program, is refused. Imports sqlite3; from the project only ``errors`` and ``states``.
Reading and writing rows is not its job (``store``, ``codec``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from creatio_attach.errors import JournalError

from .states import State

SCHEMA_VERSION = 4
#: ``PRAGMA application_id`` of a creatio-attach journal ("CAJ1"), so a foreign database is refused
APPLICATION_ID = 0x43414A31

_STATES_SQL = ", ".join(f"'{s.value}'" for s in State)
# Paths are BLOBs holding os.fsencode(path): Linux names are bytes and may not be UTF-8.
_SCHEMA_V1 = f"""
CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    inbox           TEXT    NOT NULL,
    path            BLOB    NOT NULL,
    source_path     BLOB    NOT NULL,
    location        BLOB    NOT NULL,
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER NOT NULL,
    inode           INTEGER NOT NULL,
    sha256          TEXT,
    mime            TEXT,
    target          TEXT,
    parent_schema   TEXT,
    parent_id       TEXT,
    record_name     TEXT,
    record_id       TEXT UNIQUE,
    state           TEXT    NOT NULL CHECK (state IN ({_STATES_SQL})),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    give_up_at      REAL,
    last_error      TEXT,
    matched_by      TEXT,
    duplicate_of    INTEGER REFERENCES files(id),
    disposition     TEXT,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    done_at         REAL,
    final_path      BLOB,
    UNIQUE (inbox, path, size, mtime_ns, inode)
);
CREATE INDEX files_due ON files (state, next_attempt_at);
CREATE INDEX files_content ON files (sha256, parent_schema, parent_id, target)
    WHERE sha256 IS NOT NULL;
CREATE INDEX files_done ON files (done_at) WHERE done_at IS NOT NULL;
"""


# v2: the ``submit`` channel of call recordings and the metadata it brings
_SCHEMA_V2 = """
ALTER TABLE files ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
CREATE TABLE submissions (
    id           INTEGER PRIMARY KEY,
    inbox        TEXT,
    path         BLOB NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    submitted_at REAL NOT NULL,
    taken_at     REAL,
    file_id      INTEGER REFERENCES files(id)
);
CREATE INDEX submissions_pending ON submissions (submitted_at) WHERE taken_at IS NULL;
"""

# v3: ``pending_submissions`` (polled every second by the daemon) scanned the whole table: it
# asks ``WHERE taken_at IS NULL ORDER BY id``, which v2's index on submitted_at cannot serve
_SCHEMA_V3 = """
DROP INDEX submissions_pending;
CREATE INDEX submissions_untaken ON submissions (id) WHERE taken_at IS NULL;
"""

# v4: a large file is claimed before it is hashed (``lifecycle._twin_check``): every claim asks
# whether a file of its size on its parent is uploading without a hash. Only rows without a hash
# are indexed for that (large files in flight, files not yet typed): a burst of hashed files of
# one size for one parent must not make each claim walk all of them. A large file's claim also
# asks whether a hashed file of its size is on the parent (``files_hashed_size``)
_SCHEMA_V4 = """
CREATE INDEX files_unhashed ON files (parent_id, size) WHERE sha256 IS NULL;
CREATE INDEX files_hashed_size ON files (parent_id, size) WHERE sha256 IS NOT NULL;
"""


def _run(conn: sqlite3.Connection, script: str) -> None:
    # one statement at a time: executescript() would COMMIT the migration's transaction
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


#: MIGRATIONS[n] turns a version-n journal into version n+1 (inside one transaction)
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    lambda conn: _run(conn, _SCHEMA_V1),
    lambda conn: _run(conn, _SCHEMA_V2),
    lambda conn: _run(conn, _SCHEMA_V3),
    lambda conn: _run(conn, _SCHEMA_V4),
)
assert len(MIGRATIONS) == SCHEMA_VERSION


def read_versions(conn: sqlite3.Connection) -> tuple[int, int]:
    """(user_version, application_id) of the open database."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    return int(version), int(app_id)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Stamp a new journal and bring it to ``SCHEMA_VERSION``, all in one transaction.

    Refuses (JournalError) a database that is not ours or is newer than this program.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version, app_id = read_versions(conn)
        if app_id not in (0, APPLICATION_ID):
            raise not_ours(path)
        if app_id == 0:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'"
            ).fetchone()[0]
            if tables or version:
                raise not_ours(path)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal has schema version {version}, newer than this program's "
                f"{SCHEMA_VERSION}",
                path=str(path),
                hint="run the newer creatio-attach, or move the journal aside",
            )
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def unreadable(path: Path, version: int, app_id: int) -> JournalError | None:
    """Why a journal opened read-only cannot be read by this program, or None if it can."""
    if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
        return None
    if app_id not in (0, APPLICATION_ID):
        return not_ours(path)
    return JournalError(
        f"the journal has schema version {version}, this program reads {SCHEMA_VERSION}",
        path=str(path),
        hint="start the daemon of this version once to migrate it",
    )


def not_ours(path: Path) -> JournalError:
    return JournalError(
        "this file is not a creatio-attach journal",
        path=str(path),
        hint="point [state] dir at a directory of its own, or move the file aside",
    )
