"""``$batch``: JSON and ``multipart/mixed`` batches dispatched to the OData routes in process.

One job: split a batch into sub-requests (at most 100), run each through the same OData
router (already authenticated by the outer request), stop at the first 4xx/5xx unless
``Prefer: continue-on-error``, and answer in the batch's own format (contract section 5.4).
Must not import anything from the rest of ``creatio_attach`` (only this package).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Router
from starlette.types import Message

from .bodies import odata_error

MAX_SUB_REQUESTS = 100


@dataclass
class SubRequest:
    id: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class SubResponse:
    id: str
    status: int
    headers: dict[str, str]
    body: bytes


class BatchError(ValueError):
    """The batch itself is malformed (answered 400 in the OData envelope)."""


class BatchApi:
    """``POST /odata/$batch`` over the OData ``router``."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def handle(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        raw = await request.body()
        multipart = content_type.lower().startswith("multipart/")
        try:
            subs = parse_multipart(raw, content_type) if multipart else parse_json(raw)
        except BatchError as exc:
            return odata_error(400, str(exc))
        if len(subs) > MAX_SUB_REQUESTS:
            return odata_error(
                400,
                f"The batch contains {len(subs)} requests; at most {MAX_SUB_REQUESTS} are allowed.",
            )
        keep_going = "continue-on-error" in request.headers.get("prefer", "").lower()
        results: list[SubResponse] = []
        for sub in subs:
            result = await self._run(request, sub)
            results.append(result)
            if result.status >= 400 and not keep_going:
                break
        if multipart:
            return multipart_response(results)
        return JSONResponse({"responses": [json_item(r) for r in results]})

    async def _run(self, outer: Request, sub: SubRequest) -> SubResponse:
        scope = dict(outer.scope)
        outer_path: str = scope["path"]
        prefix = outer_path[: outer_path.rfind("/odata/")]
        rel = relative_url(sub.url)
        path_part, _, query = rel.partition("?")
        path = f"{prefix}/odata/{unquote(path_part)}"
        headers = {k.lower(): v for k, v in sub.headers.items()}
        if sub.body and "content-type" not in headers:
            headers["content-type"] = "application/json"
        headers["content-length"] = str(len(sub.body))
        host = outer.headers.get("host")
        if host:
            headers["host"] = host
        scope.update(
            method=sub.method.upper(),
            path=path,
            raw_path=path.encode("utf-8"),
            query_string=quote(query, safe="=&$'(),/:;@!*+-._~%?").encode("ascii"),
            headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        )
        for key in ("path_params", "endpoint", "route"):
            scope.pop(key, None)
        body_sent = False
        never = asyncio.Event()

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": sub.body, "more_body": False}
            await never.wait()  # sub-requests never disconnect
            return {"type": "http.disconnect"}

        status = 500
        out_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", []):
                    out_headers[k.decode("latin-1")] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.router(scope, receive, send)
        out_headers.pop("content-length", None)
        return SubResponse(sub.id, status, out_headers, b"".join(chunks))


def relative_url(url: str) -> str:
    """A sub-request url relative to the OData root (absolute urls are accepted too)."""
    text = url.strip()
    if re.match(r"^https?://", text, re.IGNORECASE):
        parts = urlsplit(text)
        text = parts.path + (f"?{parts.query}" if parts.query else "")
    idx = text.find("/odata/")
    if idx >= 0:
        return text[idx + len("/odata/") :]
    return text.lstrip("/")


def parse_json(raw: bytes) -> list[SubRequest]:
    try:
        doc = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError("The batch request body is not valid JSON.") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise BatchError("A JSON batch must be an object with a 'requests' array.")
    subs: list[SubRequest] = []
    for i, item in enumerate(doc["requests"]):
        if not isinstance(item, dict) or not item.get("method") or not item.get("url"):
            raise BatchError(f"Batch request {i} needs 'method' and 'url'.")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise BatchError(f"Batch request {i}: 'headers' must be an object.")
        body = item.get("body")
        if body is None:
            data = b""
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8")
        subs.append(
            SubRequest(
                id=str(item.get("id", i + 1)),
                method=str(item["method"]),
                url=str(item["url"]),
                headers={str(k): str(v) for k, v in headers.items()},
                body=data,
            )
        )
    return subs


def json_item(result: SubResponse) -> dict[str, Any]:
    item: dict[str, Any] = {"id": result.id, "status": result.status, "headers": result.headers}
    if result.body:
        ctype = result.headers.get("content-type", "")
        if "json" in ctype:
            item["body"] = json.loads(result.body)
        elif ctype.startswith("text/") or "xml" in ctype:
            item["body"] = result.body.decode("utf-8", "replace")
        else:
            item["body"] = base64.b64encode(result.body).decode("ascii")
    return item


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _split_parts(raw: bytes, content_type: str) -> list[bytes]:
    m = _BOUNDARY.search(content_type)
    if m is None:
        raise BatchError("A multipart batch needs a boundary in its Content-Type.")
    delimiter = b"--" + m.group(1).encode("latin-1")
    pieces = raw.split(delimiter)
    if len(pieces) < 2:
        raise BatchError("The multipart batch has no parts.")
    parts: list[bytes] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        parts.append(piece.removeprefix(b"\r\n").removeprefix(b"\n").removesuffix(b"\r\n"))
    return parts


def _split_head(block: bytes) -> tuple[list[str], bytes]:
    m = re.search(rb"\r?\n\r?\n", block)
    if m is None:
        return block.decode("latin-1").splitlines(), b""
    return block[: m.start()].decode("latin-1").splitlines(), block[m.end() :]


def _headers(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def parse_multipart(raw: bytes, content_type: str) -> list[SubRequest]:
    subs: list[SubRequest] = []
    for part in _split_parts(raw, content_type):
        head, content = _split_head(part)
        part_headers = _headers(head)
        ctype = part_headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):  # a changeset: run its parts in order
            subs.extend(parse_multipart(content, ctype))
            continue
        request_head, body = _split_head(content)
        if not request_head:
            raise BatchError("A batch part has no request line.")
        words = request_head[0].split()
        if len(words) < 2:
            raise BatchError(f"Bad request line in batch part: {request_head[0]!r}")
        subs.append(
            SubRequest(
                id=part_headers.get("content-id", str(len(subs) + 1)),
                method=words[0],
                url=words[1],
                headers=_headers(request_head[1:]),
                body=body.removesuffix(b"\r\n"),
            )
        )
    return subs


def multipart_response(results: list[SubResponse]) -> Response:
    boundary = f"batchresponse_{uuid.uuid4()}"
    out = bytearray()
    for r in results:
        out += f"--{boundary}\r\nContent-Type: application/http\r\n".encode()
        out += b"Content-Transfer-Encoding: binary\r\n"
        out += f"Content-ID: {r.id}\r\n\r\n".encode("latin-1")
        try:
            reason = HTTPStatus(r.status).phrase
        except ValueError:
            reason = ""
        out += f"HTTP/1.1 {r.status} {reason}\r\n".encode()
        for k, v in r.headers.items():
            out += f"{k}: {v}\r\n".encode("latin-1")
        out += b"\r\n" + r.body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return Response(bytes(out), media_type=f"multipart/mixed; boundary={boundary}")
