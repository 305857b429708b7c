"""The per-request body limit (IIS's `maxAllowedContentLength`, default 30,000,000 bytes).

A request whose `Content-Length` is above the limit gets 413 before its body is read (the server
discards the unread body and keeps the connection). A body without `Content-Length` (chunked) is
counted while it streams into the route; when the count passes the limit the route is stopped,
whatever it was about to answer is dropped, and the client gets the same 413. The body is the
short IIS-style HTML error page (`HTTP Error 413.0 - Request Entity Too Large`), an emulator
decision: Creatio's own wording is not documented.

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PREFIX = "/__emulator__/"

TOO_LARGE_PAGE = (
    "<!DOCTYPE html><html><head><title>IIS Detailed Error - 413.0 - Request Entity Too Large"
    "</title></head><body><h3>HTTP Error 413.0 - Request Entity Too Large</h3>"
    "<h4>The page was not displayed because the request entity is too large.</h4>"
    "<p>Maximum request length: {limit} bytes.</p></body></html>"
)


class RequestBodyTooLarge(Exception):
    """Raised into the route by the counting `receive` once the body passes the limit."""


def too_large(limit: int) -> Response:
    return HTMLResponse(TOO_LARGE_PAGE.format(limit=limit), status_code=413)


class BodyLimitMiddleware:
    """413 for request bodies above `max_bytes` (everything but `/__emulator__/`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise RequestBodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise RequestBodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # the route's answer to the exception is replaced by our 413
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await too_large(self.max_bytes)(scope, receive, send)
