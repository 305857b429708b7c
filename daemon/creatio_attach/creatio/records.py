"""Single-record OData calls: read one by Id, create with read-back, delete.

A create sends its own ``Id``; after any failed or unanswered create the record is read back
by that Id and created again only when it does not exist, so a retry never makes a second
record (what Creatio answers to a duplicate Id is not documented). Must not import ``urllib3``
or ``requests``: calls go through ``session.Connection``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from creatio_attach.errors import CreatioRejected, CreatioUnavailable

from .http import json_body, json_dumps, where
from .literals import query_string
from .retry import Retrier
from .session import Connection
from .types import normalise_guid

log = structlog.get_logger()

JSON_WRITE = {"Content-Type": "application/json; charset=utf-8; IEEE754Compatible=true"}


def json_ready(value: Any) -> Any:
    """A value for a create/patch body: GUIDs as strings, dates as ISO 8601 UTC with ``Z``."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # IEEE754Compatible=true: decimals travel as strings
    return value


class Records:
    """Reads and writes single records of any entity set."""

    def __init__(self, conn: Connection, retrier: Retrier) -> None:
        self.conn = conn
        self.retrier = retrier

    def url(self, entity: str, record_id: str | None = None) -> str:
        base = f"{self.conn.ws}/odata/{entity}"
        return f"{base}({record_id})" if record_id is not None else base

    def get(
        self, entity: str, record_id: str, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """The record, or None. A ``$filter`` on the key rather than ``Entity(id)``: an empty
        answer is unambiguous, while a missing single entity's status is not documented."""
        return self.retrier.call(
            lambda: self.get_once(entity, record_id, select), what=f"read {entity}"
        )

    def get_once(
        self, entity: str, record_id: str, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        record_id = normalise_guid(record_id)
        params: dict[str, str | int] = {"$filter": f"Id eq {record_id}", "$top": 1}
        if select:
            params["$select"] = ",".join(select)
        url = self.url(entity) + "?" + query_string(params)
        with self.conn.request("GET", url) as response:
            rows = json_body(response, where("GET", url)).get("value") or []
        return dict(rows[0]) if rows else None

    def create(
        self,
        entity: str,
        values: Mapping[str, Any],
        record_id: str,
        *,
        check_first: bool = False,
    ) -> dict[str, Any]:
        """POST the record with our ``Id``; idempotent through read-back (see module doc).
        ``check_first``: the record may exist already (an earlier attempt made it): read it
        first, so that a Creatio that ignores the client's Id does not get a second one."""
        record_id = normalise_guid(record_id)
        body = json_dumps({"Id": record_id, **{k: json_ready(v) for k, v in values.items()}})
        url = self.url(entity)
        tried = check_first

        def step() -> dict[str, Any]:
            nonlocal tried
            if tried:
                existing = self.get_once(entity, record_id)
                if existing is not None:
                    log.info("creatio.create.found_after_retry", entity=entity, id=record_id)
                    return existing
            tried = True
            try:
                with self.conn.request(
                    "POST", url, headers=JSON_WRITE, body=body, ok=(200, 201)
                ) as response:
                    created = json_body(response, where("POST", url))
            except CreatioRejected:
                # an earlier attempt may have created it (the answer got lost): same Id, ours
                existing = self.get_once(entity, record_id)
                if existing is not None:
                    log.info("creatio.create.already_exists", entity=entity, id=record_id)
                    return existing
                raise
            if not isinstance(created, dict):
                raise CreatioRejected(f"Creatio answered the create of {entity} with no record")
            return created

        return self.retrier.call(step, what=f"create {entity}")

    def delete(self, entity: str, record_id: str) -> None:
        """Delete the record; one that is already gone counts as deleted."""
        url = self.url(entity, normalise_guid(record_id))

        def step() -> None:
            try:
                self.conn.request("DELETE", url, ok=(200, 204)).close()
            except CreatioRejected as exc:
                if exc.status != 404:
                    raise

        self.retrier.call(step, what=f"delete {entity}")

    def discard(self, entity: str, record_id: str, reason: str) -> None:
        """Best-effort delete of a half-made record; the caller's error is what matters."""
        try:
            self.delete(entity, record_id)
            log.info("creatio.upload.discarded", entity=entity, id=record_id, reason=reason)
        except (CreatioRejected, CreatioUnavailable) as exc:
            # left for the next attempt with the same record_id, which completes it
            log.warning(
                "creatio.upload.discard_failed", entity=entity, id=record_id, error=exc.message
            )
