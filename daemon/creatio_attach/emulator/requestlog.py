"""The request log: an ASGI middleware that records every request, and the bounded in-memory ring.

Counts request and response bytes as they pass (nothing is buffered), so it is safe on 2 GiB
uploads. `/__emulator__/` requests are not recorded. Entries never hold header values, cookies or
bodies: only method, path, query, status, request Content-Type, byte counts, duration, the kind of
authentication offered (`auth`), whether a `BPMCSRF` header was present (`csrf_header`) and
whether the request said `ForceUseSession: true` (`force_use_session`; any other value, or no
such header, is false: exactly what decides 401 versus a 302 to the login page).

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PREFIX = "/__emulator__/"
AuthKind = Literal["cookie", "bearer", "none"]


@dataclass(frozen=True)
class RequestEntry:
    """One finished request. `status` 0 means the connection was dropped before any response."""

    seq: int
    method: str
    path: str
    query: str
    status: int
    content_type: str | None
    bytes_in: int
    bytes_out: int
    duration_ms: float
    auth: AuthKind
    csrf_header: bool
    force_use_session: bool


class RequestLog:
    """The last `capacity` entries, oldest first; sequence numbers start at 1 and never repeat."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._entries: deque[RequestEntry] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, **fields: Any) -> RequestEntry:
        with self._lock:
            self._seq += 1
            entry = RequestEntry(seq=self._seq, **fields)
            self._entries.append(entry)
        return entry

    def entries(self, since: int = 0) -> list[RequestEntry]:
        """Entries with `seq` greater than `since`."""
        with self._lock:
            return [e for e in self._entries if e.seq > since]

    def as_json(self, since: int = 0) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.entries(since)]

    def clear(self) -> None:
        """Forget the entries; sequence numbers keep counting so `since` stays meaningful."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def offered_auth(headers: Headers) -> AuthKind:
    """Which credentials the request carried (not whether they were valid)."""
    if headers.get("authorization", "").lower().startswith("bearer "):
        return "bearer"
    cookie = headers.get("cookie", "")
    if ".ASPXAUTH=" in cookie or "BPMSESSIONID=" in cookie:
        return "cookie"
    return "none"


def forces_session(headers: Headers) -> bool:
    """`ForceUseSession: true` (case-insensitive, as the authentication middleware reads it)."""
    return headers.get("forceusesession", "").strip().lower() == "true"


class RequestLogMiddleware:
    """Records each request outside `/__emulator__/` when it finishes (or fails)."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counts = {"in": 0, "out": 0, "status": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        headers = Headers(scope=scope)
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            self.log.add(
                method=scope["method"],
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                status=counts["status"],
                content_type=headers.get("content-type"),
                bytes_in=counts["in"],
                bytes_out=counts["out"],
                duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
                auth=offered_auth(headers),
                csrf_header="bpmcsrf" in headers,
                force_use_session=forces_session(headers),
            )
