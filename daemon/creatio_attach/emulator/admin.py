"""The `/__emulator__/` endpoints: test and inspection hooks that are NOT part of Creatio.

No authentication, no faults, no body limit and no entry in the request log. Endpoints:

- `GET /__emulator__/health` -> `{"ok": true}`
- `GET /__emulator__/requests[?since=<seq>]` -> the request log (entries include `auth`,
  `csrf_header` and `force_use_session`: whether `ForceUseSession: true` was sent);
  `DELETE` clears it
- `POST /__emulator__/reset` -> all records and blobs deleted, sessions/tokens ended, log cleared
- `GET /__emulator__/files` -> every stored file record with its size and SHA-256
- `POST /__emulator__/records/{Entity}` -> insert a JSON object (answer: the row) or a list
  (answer: the rows) as-is, 201; 409 for an Id that exists (earlier rows of a list stay)
- `GET|PUT /__emulator__/faults` -> the fault plan; PUT `{"spec": "<--faults syntax>"|null}`
- `POST /__emulator__/sessions/expire` -> every session and token ends now
- `GET /__emulator__/sessions` -> `{"sessions": <live>, "tokens": <live>}` (reading it does not
  keep anything alive, so tests can wait for an idle expiry)
- `GET /__emulator__/download/{Entity}/{Id}` -> a stored file's bytes (used by the web page)

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from creatio_attach.emulator.auth import Sessions
from creatio_attach.emulator.faults import Faults, FaultSpecError
from creatio_attach.emulator.requestlog import RequestLog
from creatio_attach.emulator.store import DuplicateId, Store

PREFIX = "/__emulator__"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266/5987)."""
    fallback = name.encode("ascii", "replace").decode("ascii").replace('"', "'").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def admin_routes(
    store: Store, sessions: Sessions, faults: Faults, log: RequestLog
) -> list[BaseRoute]:
    """The admin routes, mounted at the site root (paths include `/__emulator__`)."""

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def requests_log(request: Request) -> Response:
        if request.method == "DELETE":
            log.clear()
            return Response(status_code=204)
        since_text = request.query_params.get("since", "0")
        try:
            since = int(since_text)
        except ValueError:
            return _error(400, "since must be an integer")
        return JSONResponse(log.as_json(since))

    async def reset(request: Request) -> Response:
        await run_in_threadpool(store.reset)
        sessions.expire_all()
        log.clear()
        return JSONResponse({"ok": True})

    async def files(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(store.files_summary))

    async def records(request: Request) -> Response:
        entity = request.path_params["entity"]
        if entity not in store.schemas:
            return _error(404, f"unknown entity {entity!r}")
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body must be a JSON object or a list of objects")
        rows: list[Any] = payload if isinstance(payload, list) else [payload]
        if not rows or not all(isinstance(r, dict) for r in rows):
            return _error(400, "the body must be a JSON object or a list of objects")

        def insert_all() -> list[dict[str, Any]]:
            return [store.insert(entity, row) for row in rows]

        try:
            created = await run_in_threadpool(insert_all)
        except DuplicateId as exc:
            return _error(409, f"a {entity} record with Id {exc} already exists")
        except (KeyError, ValueError, TypeError) as exc:
            # unknown columns and values of the wrong type; the message names the problem
            return _error(400, f"{type(exc).__name__}: {exc}")
        return JSONResponse(created if isinstance(payload, list) else created[0], status_code=201)

    async def fault_plan(request: Request) -> Response:
        if request.method == "PUT":
            try:
                payload = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError):
                return _error(400, 'the body must be {"spec": "<fault spec>"} or {"spec": null}')
            spec = payload.get("spec") if isinstance(payload, dict) else None
            if not isinstance(payload, dict) or not (spec is None or isinstance(spec, str)):
                return _error(400, 'the body must be {"spec": "<fault spec>"} or {"spec": null}')
            try:
                faults.set_spec(spec)
            except FaultSpecError as exc:
                return _error(400, str(exc))
        return JSONResponse(faults.describe())

    async def expire_sessions(request: Request) -> Response:
        return JSONResponse({"expired": sessions.expire_all()})

    async def live_sessions(request: Request) -> Response:
        return JSONResponse(sessions.counts())

    async def download(request: Request) -> Response:
        entity = request.path_params["entity"]
        record_id = request.path_params["record_id"].lower()
        if entity not in store.schemas:
            return _error(404, f"unknown entity {entity!r}")
        row = await run_in_threadpool(store.get, entity, record_id)
        path = await run_in_threadpool(store.content_path, entity, record_id)
        if row is None or path is None:
            return _error(404, "no stored content for this record")
        name = str(row.get("Name") or record_id)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            headers={"Content-Disposition": content_disposition(name)},
        )

    return [
        Route(PREFIX + "/health", health, methods=["GET"]),
        Route(PREFIX + "/requests", requests_log, methods=["GET", "DELETE"]),
        Route(PREFIX + "/reset", reset, methods=["POST"]),
        Route(PREFIX + "/files", files, methods=["GET"]),
        Route(PREFIX + "/records/{entity}", records, methods=["POST"]),
        Route(PREFIX + "/faults", fault_plan, methods=["GET", "PUT"]),
        Route(PREFIX + "/sessions/expire", expire_sessions, methods=["POST"]),
        Route(PREFIX + "/sessions", live_sessions, methods=["GET"]),
        Route(PREFIX + "/download/{entity}/{record_id}", download, methods=["GET"]),
    ]
