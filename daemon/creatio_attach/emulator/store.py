"""The emulator's storage: records in SQLite (one typed table per schema), content via ``blobs.py``.

One job: keep records in ``data_dir/emulator.sqlite3``, thread-safe, surviving a restart, and
keep each file record's ``Size`` in step with its content. The content itself (temp files,
committed blobs, partial uploads) is ``blobs.py``'s, which shares this connection and lock;
value conversion is ``values.py``'s (``EMPTY_GUID`` and ``BadValue`` are re-exported here).
Must not import anything from the rest of ``creatio_attach`` nor starlette.
"""

# Identifiers in SQL text come only from schemas.py (quoted); values are bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .blobs import Blobs
from .filter import SqlQuery
from .schemas import SEED_ROWS, Column, Schema, Schemas
from .values import (
    EMPTY_GUID,
    SQL_TYPES,
    BadValue,
    from_sql,
    normalise_guid,
    now_iso,
    quote,
    to_sql,
)

__all__ = ["EMPTY_GUID", "BadValue", "DuplicateId", "Store", "UnknownColumn"]


class DuplicateId(Exception):
    """A record with this Id already exists (nothing was overwritten)."""


class UnknownColumn(ValueError):
    """A body names a column the schema does not have."""

    def __init__(self, name: str, schema: str) -> None:
        super().__init__(f"The property '{name}' does not exist on type '{schema}'.")
        self.name = name


class Store:
    """Records and blobs under ``data_dir``; every public method is thread-safe."""

    def __init__(self, data_dir: Path, schemas: Schemas) -> None:
        self.data_dir = Path(data_dir)
        self.schemas = schemas
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.data_dir / "emulator.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.blobs = Blobs(self.data_dir / "blobs", self._conn, self._lock)
        self.blob_dir = self.blobs.blob_dir
        self.tmp_dir = self.blobs.tmp_dir
        with self._lock:
            self._create_tables()
            self._seed()

    # ------------------------------------------------------------------ setup

    def _create_tables(self) -> None:
        c = self._conn
        for schema in self.schemas.values():
            table = quote(schema.name)
            cols = [f"{quote('Id')} TEXT PRIMARY KEY"] + [
                f"{quote(col.flat_name)} {SQL_TYPES[col.type]}"
                for col in schema.stored_columns()
                if col.name != "Id"
            ]
            c.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
            existing = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            for col in schema.stored_columns():
                if col.flat_name not in existing:
                    c.execute(
                        f"ALTER TABLE {table} ADD COLUMN {quote(col.flat_name)} "
                        f"{SQL_TYPES[col.type]}"
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
        self.blobs.create_table()

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

    def _new_row(self, schema: Schema, row: Mapping[str, Any], stamp: str) -> dict[str, Any]:
        """Body values plus a generated Id (if absent), CreatedOn/ModifiedOn and defaults."""
        values = self._values(schema, row)
        values["Id"] = values.get("Id") or str(uuid.uuid4())
        values.setdefault("CreatedOn", stamp)
        values.setdefault("ModifiedOn", stamp)
        for col in schema.stored_columns():
            if col.default is not None and values.get(col.flat_name) is None:
                values[col.flat_name] = to_sql(col, col.default)
        return values

    def row_out(
        self, schema: Schema, row: sqlite3.Row | Sequence[Any], columns: Sequence[Column]
    ) -> dict[str, Any]:
        return {col.flat_name: from_sql(col, row[i]) for i, col in enumerate(columns)}

    def insert(self, entity: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Insert one record (Id generated if absent; defaults and CreatedOn/ModifiedOn set)."""
        schema = self._schema(entity)
        values = self._new_row(schema, row, now_iso())
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
        prepared = [self._new_row(schema, row, stamp) for row in rows]
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
            self.blobs.drop(entity, rid)
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

    def partial_path(self, entity: str, record_id: str) -> Path:
        """Where a chunked upload (FileApiService) accumulates bytes."""
        return self.blobs.partial_path(entity, record_id)

    def new_temp_path(self) -> Path:
        """A fresh file name for streaming a body into (renamed on commit)."""
        return self.blobs.new_temp_path()

    def content_path(self, entity: str, record_id: str) -> Path | None:
        """The complete content's file, or None (no content, or an upload still in progress)."""
        return self.blobs.content_path(entity, record_id)

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
            self.blobs.install(entity, rid, temp, size, sha256)
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
            self.blobs.drop(entity, rid)
            self.update(entity, rid, {"Size": 0})
        return True

    def upload_state(self, entity: str, record_id: str) -> tuple[int, int, bool] | None:
        """(bytes received, declared total, complete) of the record's content, or None."""
        return self.blobs.upload_state(entity, record_id)

    def start_upload(self, entity: str, record_id: str, total: int) -> Path:
        """Forget any content (complete or partial) and start a chunked upload from byte 0."""
        return self.blobs.start_upload(entity, record_id, total)

    def record_progress(self, entity: str, record_id: str, received: int) -> bool:
        """Note bytes received; when all arrived, the partial file becomes the content.

        Returns True when the upload is now complete (``Size`` set to the total).
        """
        rid = normalise_guid(record_id)
        with self._lock:
            progress = self.blobs.record_progress(entity, rid, received)
            if progress is None:
                return False
            complete, total = progress
            if complete:
                row = self.get(entity, rid)
                if row is not None:
                    self._set_sizes(entity, rid, row, total)
        return complete

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
                        "sha256": self.blobs.sha256(schema.name, rid),
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
            self.blobs.drop_all()
            self._seed()

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.ProgrammingError):
            self._conn.close()
