"""The emulator's storage: records in SQLite (one typed table per schema), content as blobs on disk.

One job: keep records and file content in ``data_dir`` (``emulator.sqlite3`` + ``blobs/``),
thread-safe, surviving a restart. Content is never held in memory: callers stream bodies into
files this module hands out and then commit them here.
Must not import anything from the rest of ``creatio_attach`` nor starlette.
"""

# Identifiers in SQL text come only from schemas.py (quoted); values are bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .filter import DATETIME_FORMAT, SqlQuery, normalise_datetime, normalise_guid, quote
from .schemas import SEED_ROWS, Column, ColumnType, Schema, Schemas

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"

_SQL_TYPES = {
    ColumnType.GUID: "TEXT",
    ColumnType.STRING: "TEXT",
    ColumnType.INTEGER: "INTEGER",
    ColumnType.FLOAT: "REAL",
    ColumnType.DATETIME: "TEXT",
    ColumnType.BOOLEAN: "INTEGER",
    ColumnType.LOOKUP: "TEXT",
}


class DuplicateId(Exception):
    """A record with this Id already exists (nothing was overwritten)."""


class UnknownColumn(ValueError):
    """A body names a column the schema does not have."""

    def __init__(self, name: str, schema: str) -> None:
        super().__init__(f"The property '{name}' does not exist on type '{schema}'.")
        self.name = name


class BadValue(ValueError):
    """A body value does not fit its column's type."""


def now_iso() -> str:
    return datetime.now(UTC).strftime(DATETIME_FORMAT)


def to_sql(column: Column, value: Any) -> Any:
    """A JSON value -> the stored SQLite value for ``column`` (raises :class:`BadValue`)."""
    t = column.type
    name = column.flat_name
    if value is None:
        return None
    try:
        if t in (ColumnType.GUID, ColumnType.LOOKUP):
            if not isinstance(value, str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Guid.")
            guid = normalise_guid(value)
            return None if guid == EMPTY_GUID else guid
        if t is ColumnType.STRING:
            if not isinstance(value, str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.String.")
            return value
        if t is ColumnType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Int32.")
            return int(value)
        if t is ColumnType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Decimal.")
            return float(value)
        if t is ColumnType.DATETIME:
            if not isinstance(value, str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.DateTimeOffset.")
            return normalise_datetime(value)
        if t is ColumnType.BOOLEAN:
            if not isinstance(value, bool):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Boolean.")
            return 1 if value else 0
    except ValueError as exc:
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"Cannot convert the value of {name} to {t.edm}: {exc}") from exc
    raise BadValue(f"The property '{name}' of type {t.edm} cannot be written in a JSON body.")


def from_sql(column: Column, value: Any) -> Any:
    """A stored value -> JSON as Creatio serialises it (empty lookups as the empty GUID)."""
    t = column.type
    if t in (ColumnType.GUID, ColumnType.LOOKUP):
        return value if value is not None else EMPTY_GUID
    if t is ColumnType.STRING:
        return value if value is not None else ""
    if t is ColumnType.BOOLEAN:
        return bool(value) if value is not None else False
    if t is ColumnType.INTEGER:
        return int(value) if value is not None else 0
    if t is ColumnType.FLOAT:
        return float(value) if value is not None else 0.0
    return value  # DATETIME: ISO string or None


class Store:
    """Records and blobs under ``data_dir``; every public method is thread-safe."""

    def __init__(self, data_dir: Path, schemas: Schemas) -> None:
        self.data_dir = Path(data_dir)
        self.schemas = schemas
        self.blob_dir = self.data_dir / "blobs"
        self.tmp_dir = self.blob_dir / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # bodies cut off by a crash
            leftover.unlink(missing_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.data_dir / "emulator.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._create_tables()
            self._seed()

    # ------------------------------------------------------------------ setup

    def _create_tables(self) -> None:
        c = self._conn
        for schema in self.schemas.values():
            table = quote(schema.name)
            cols = [f"{quote('Id')} TEXT PRIMARY KEY"] + [
                f"{quote(col.flat_name)} {_SQL_TYPES[col.type]}"
                for col in schema.stored_columns()
                if col.name != "Id"
            ]
            c.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
            existing = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            for col in schema.stored_columns():
                if col.flat_name not in existing:
                    c.execute(
                        f"ALTER TABLE {table} ADD COLUMN {quote(col.flat_name)} "
                        f"{_SQL_TYPES[col.type]}"
                    )
            indexed = [col.flat_name for col in schema.lookups()]
            indexed += [
                n
                for n in ("RecordId", "CreatedOn", "Number", "IntegrationId")
                if schema.by_flat(n) is not None
            ]
            for name in indexed:
                c.execute(
                    f"CREATE INDEX IF NOT EXISTS {quote(f'ix_{schema.name}_{name}')} "
                    f"ON {table} ({quote(name)})"
                )
        c.execute(
            "CREATE TABLE IF NOT EXISTS _blob (entity TEXT NOT NULL, id TEXT NOT NULL, "
            "received INTEGER NOT NULL, total INTEGER NOT NULL, complete INTEGER NOT NULL, "
            "sha256 TEXT, PRIMARY KEY (entity, id))"
        )

    def _seed(self) -> None:
        for entity, rows in SEED_ROWS.items():
            if entity not in self.schemas:
                continue
            for row in rows:
                if self.get(entity, str(row["Id"])) is None:
                    self.insert(entity, row)

    # ------------------------------------------------------------------ records

    def _schema(self, entity: str) -> Schema:
        try:
            return self.schemas[entity]
        except KeyError:
            raise KeyError(f"unknown entity {entity!r}") from None

    def _values(self, schema: Schema, row: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, value in row.items():
            column = schema.by_flat(key)
            if column is None:
                raise UnknownColumn(key, schema.name)
            values[column.flat_name] = to_sql(column, value)
        return values

    def row_out(
        self, schema: Schema, row: sqlite3.Row | Sequence[Any], columns: Sequence[Column]
    ) -> dict[str, Any]:
        return {col.flat_name: from_sql(col, row[i]) for i, col in enumerate(columns)}

    def insert(self, entity: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Insert one record (Id generated if absent; defaults and CreatedOn/ModifiedOn set)."""
        schema = self._schema(entity)
        values = self._values(schema, row)
        if not values.get("Id"):
            values["Id"] = str(uuid.uuid4())
        stamp = now_iso()
        values.setdefault("CreatedOn", stamp)
        values.setdefault("ModifiedOn", stamp)
        for col in schema.stored_columns():
            if col.default is not None and values.get(col.flat_name) is None:
                values[col.flat_name] = to_sql(col, col.default)
        names = list(values)
        sql = (
            f"INSERT INTO {quote(schema.name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        with self._lock:
            try:
                self._conn.execute(sql, [values[n] for n in names])
            except sqlite3.IntegrityError as exc:
                raise DuplicateId(values["Id"]) from exc
            out = self.get(entity, values["Id"])
        assert out is not None
        return out

    def insert_many(self, entity: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert many records in one transaction (test setup, seeding); returns the count."""
        schema = self._schema(entity)
        stamp = now_iso()
        prepared: list[dict[str, Any]] = []
        for row in rows:
            values = self._values(schema, row)
            values["Id"] = values.get("Id") or str(uuid.uuid4())
            values.setdefault("CreatedOn", stamp)
            values.setdefault("ModifiedOn", stamp)
            for col in schema.stored_columns():
                if col.default is not None and values.get(col.flat_name) is None:
                    values[col.flat_name] = to_sql(col, col.default)
            prepared.append(values)
        names = [c.flat_name for c in schema.stored_columns()]
        sql = (
            f"INSERT INTO {quote(schema.name)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        with self._lock:
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany(sql, ([v.get(n) for n in names] for v in prepared))
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise DuplicateId(str(exc)) from exc
                raise
        return len(prepared)

    def get(self, entity: str, record_id: str) -> dict[str, Any] | None:
        schema = self._schema(entity)
        try:
            rid = normalise_guid(record_id)
        except ValueError:
            return None
        columns = schema.stored_columns()
        sql = (
            f"SELECT {', '.join(quote(c.flat_name) for c in columns)} "
            f"FROM {quote(schema.name)} WHERE {quote('Id')} = ?"
        )
        with self._lock:
            found = self._conn.execute(sql, (rid,)).fetchone()
        return None if found is None else self.row_out(schema, found, columns)

    def update(self, entity: str, record_id: str, changes: Mapping[str, Any]) -> bool:
        """Set some columns; False when the record does not exist."""
        schema = self._schema(entity)
        values = self._values(schema, changes)
        values.pop("Id", None)
        values.setdefault("ModifiedOn", now_iso())
        sets = ", ".join(f"{quote(n)} = ?" for n in values)
        sql = f"UPDATE {quote(schema.name)} SET {sets} WHERE {quote('Id')} = ?"
        with self._lock:
            cur = self._conn.execute(sql, [*values.values(), normalise_guid(record_id)])
        return cur.rowcount > 0

    def delete(self, entity: str, record_id: str) -> bool:
        """Delete a record, its content and the ``SysFile`` rows linked to it (section 3)."""
        schema = self._schema(entity)
        rid = normalise_guid(record_id)
        with self._lock:
            cur = self._conn.execute(
                f"DELETE FROM {quote(schema.name)} WHERE {quote('Id')} = ?", (rid,)
            )
            if cur.rowcount == 0:
                return False
            self._drop_blob(entity, rid)
            if entity != "SysFile" and "SysFile" in self.schemas:
                linked = self._conn.execute(
                    f"SELECT {quote('Id')} FROM {quote('SysFile')} WHERE {quote('RecordId')} = ?",
                    (rid,),
                ).fetchall()
                for (sys_id,) in linked:
                    self.delete("SysFile", sys_id)
        return True

    def select(
        self,
        query: SqlQuery,
        *,
        where: str | None,
        order: str | None,
        columns: Sequence[Column],
        limit: int | None,
        offset: int,
    ) -> list[dict[str, Any]]:
        """Run a compiled query (joins and parameters from ``query``)."""
        sql = [
            f"SELECT {', '.join('t0.' + quote(c.flat_name) for c in columns)} "
            f"FROM {quote(query.schema.name)} t0",
            *query.joins,
        ]
        if where:
            sql.append(f"WHERE {where}")
        sql.append(f"ORDER BY {order}" if order else "ORDER BY t0.rowid")
        sql.append("LIMIT ? OFFSET ?")
        params = [*query.params, -1 if limit is None else limit, offset]
        with self._lock:
            rows = self._conn.execute(" ".join(sql), params).fetchall()
        return [self.row_out(query.schema, r, columns) for r in rows]

    def count(self, query: SqlQuery, *, where: str | None) -> int:
        sql = [f"SELECT COUNT(*) FROM {quote(query.schema.name)} t0", *query.joins]
        if where:
            sql.append(f"WHERE {where}")
        with self._lock:
            return int(self._conn.execute(" ".join(sql), query.params).fetchone()[0])

    def get_many(
        self, entity: str, ids: Iterable[str], columns: Sequence[Column]
    ) -> dict[str, dict[str, Any]]:
        """Rows by Id (for ``$expand``); missing ids are left out."""
        schema = self._schema(entity)
        wanted = sorted({i for i in ids if i and i != EMPTY_GUID})
        cols = list(columns)
        if not any(c.name == "Id" for c in cols):
            cols = [schema.by_flat("Id"), *cols]  # type: ignore[list-item]
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            sql = (
                f"SELECT {', '.join(quote(c.flat_name) for c in cols)} FROM "
                f"{quote(schema.name)} WHERE {quote('Id')} IN ({', '.join('?' for _ in batch)})"
            )
            with self._lock:
                for r in self._conn.execute(sql, batch).fetchall():
                    row = self.row_out(schema, r, cols)
                    out[row["Id"]] = {k: row[k] for k in (c.flat_name for c in columns)}
        return out

    def list_rows(self, entity: str, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first (by CreatedOn)."""
        schema = self._schema(entity)
        columns = schema.stored_columns()
        sql = (
            f"SELECT {', '.join(quote(c.flat_name) for c in columns)} FROM {quote(schema.name)} "
            f"ORDER BY {quote('CreatedOn')} DESC, rowid DESC LIMIT ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, (limit,)).fetchall()
        return [self.row_out(schema, r, columns) for r in rows]

    # ------------------------------------------------------------------ content

    def _final_path(self, entity: str, rid: str) -> Path:
        return self.blob_dir / entity / rid

    def partial_path(self, entity: str, record_id: str) -> Path:
        """Where a chunked upload (FileApiService) accumulates bytes."""
        path = self.blob_dir / entity / f"{normalise_guid(record_id)}.part"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def new_temp_path(self) -> Path:
        """A fresh file name for streaming a body into (renamed on commit)."""
        return self.tmp_dir / uuid.uuid4().hex

    def content_path(self, entity: str, record_id: str) -> Path | None:
        """The complete content's file, or None (no content, or an upload still in progress)."""
        try:
            rid = normalise_guid(record_id)
        except ValueError:
            return None
        with self._lock:
            found = self._conn.execute(
                "SELECT complete FROM _blob WHERE entity = ? AND id = ?", (entity, rid)
            ).fetchone()
        path = self._final_path(entity, rid)
        return path if found is not None and found[0] and path.exists() else None

    def commit_content(
        self, entity: str, record_id: str, temp: Path, size: int, sha256: str | None
    ) -> bool:
        """Make ``temp`` the record's content; set ``Size`` (and ``TotalSize`` if unset).

        False (and ``temp`` removed) when the record does not exist (any more).
        """
        rid = normalise_guid(record_id)
        with self._lock:
            row = self.get(entity, rid)
            if row is None:
                temp.unlink(missing_ok=True)
                return False
            final = self._final_path(entity, rid)
            final.parent.mkdir(parents=True, exist_ok=True)
            self._drop_blob(entity, rid)
            temp.replace(final)
            self._conn.execute(
                "INSERT OR REPLACE INTO _blob (entity, id, received, total, complete, sha256) "
                "VALUES (?, ?, ?, ?, 1, ?)",
                (entity, rid, size, size, sha256),
            )
            self._set_sizes(entity, rid, row, size)
        return True

    def _set_sizes(self, entity: str, rid: str, row: Mapping[str, Any], size: int) -> None:
        changes: dict[str, Any] = {"Size": size}
        if not row.get("TotalSize"):
            changes["TotalSize"] = size
        self.update(entity, rid, changes)

    def clear_content(self, entity: str, record_id: str) -> bool:
        """``DELETE .../Data``: drop the content, ``Size`` becomes 0."""
        rid = normalise_guid(record_id)
        with self._lock:
            if self.get(entity, rid) is None:
                return False
            self._drop_blob(entity, rid)
            self.update(entity, rid, {"Size": 0})
        return True

    def _drop_blob(self, entity: str, rid: str) -> None:
        self._conn.execute("DELETE FROM _blob WHERE entity = ? AND id = ?", (entity, rid))
        self._final_path(entity, rid).unlink(missing_ok=True)
        (self.blob_dir / entity / f"{rid}.part").unlink(missing_ok=True)

    def upload_state(self, entity: str, record_id: str) -> tuple[int, int, bool] | None:
        """(bytes received, declared total, complete) of the record's content, or None."""
        rid = normalise_guid(record_id)
        with self._lock:
            found = self._conn.execute(
                "SELECT received, total, complete FROM _blob WHERE entity = ? AND id = ?",
                (entity, rid),
            ).fetchone()
        return None if found is None else (int(found[0]), int(found[1]), bool(found[2]))

    def start_upload(self, entity: str, record_id: str, total: int) -> Path:
        """Forget any content (complete or partial) and start a chunked upload from byte 0."""
        rid = normalise_guid(record_id)
        with self._lock:
            self._drop_blob(entity, rid)
            self._conn.execute(
                "INSERT INTO _blob (entity, id, received, total, complete, sha256) "
                "VALUES (?, ?, 0, ?, 0, NULL)",
                (entity, rid, total),
            )
            path = self.partial_path(entity, rid)
            path.write_bytes(b"")
        return path

    def record_progress(self, entity: str, record_id: str, received: int) -> bool:
        """Note bytes received; when all arrived, the partial file becomes the content.

        Returns True when the upload is now complete (``Size`` set to the total).
        """
        rid = normalise_guid(record_id)
        with self._lock:
            state = self.upload_state(entity, rid)
            if state is None:
                return False
            _, total, _ = state
            complete = received == total
            if complete:
                self.partial_path(entity, rid).replace(self._final_path(entity, rid))
            self._conn.execute(
                "UPDATE _blob SET received = ?, complete = ? WHERE entity = ? AND id = ?",
                (received, 1 if complete else 0, entity, rid),
            )
            if complete:
                row = self.get(entity, rid)
                if row is not None:
                    self._set_sizes(entity, rid, row, total)
        return complete

    def _sha256(self, entity: str, rid: str) -> str | None:
        path = self.content_path(entity, rid)
        if path is None:
            return None
        with self._lock:
            found = self._conn.execute(
                "SELECT sha256 FROM _blob WHERE entity = ? AND id = ?", (entity, rid)
            ).fetchone()
        if found is not None and found[0]:
            return str(found[0])
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._conn.execute(
                "UPDATE _blob SET sha256 = ? WHERE entity = ? AND id = ? AND complete = 1",
                (value, entity, rid),
            )
        return value

    def files_summary(self) -> list[dict[str, Any]]:
        """Every file record of every file object, with its stored content's size and SHA-256."""
        out: list[dict[str, Any]] = []
        for schema in self.schemas.file_objects():
            for row in self.list_rows(schema.name, limit=1_000_000):
                rid = row["Id"]
                path = self.content_path(schema.name, rid)
                if schema.parent_column:
                    parent_schema: str | None = schema.parent_column
                    parent_id: str | None = row[f"{schema.parent_column}Id"]
                else:
                    parent_schema = row.get("RecordSchemaName") or None
                    parent_id = row.get("RecordId")
                out.append(
                    {
                        "entity": schema.name,
                        "id": rid,
                        "name": row.get("Name", ""),
                        "size": path.stat().st_size if path is not None else 0,
                        "sha256": self._sha256(schema.name, rid),
                        "parent_schema": parent_schema,
                        "parent_id": None if parent_id == EMPTY_GUID else parent_id,
                        "created_on": row.get("CreatedOn"),
                    }
                )
        return out

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Delete all records and blobs (lookup values are seeded again)."""
        with self._lock:
            for schema in self.schemas.values():
                self._conn.execute(f"DELETE FROM {quote(schema.name)}")
            self._conn.execute("DELETE FROM _blob")
            for child in self.blob_dir.iterdir():
                if child != self.tmp_dir:
                    shutil.rmtree(child, ignore_errors=True)
            self._seed()

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.ProgrammingError):
            self._conn.close()
