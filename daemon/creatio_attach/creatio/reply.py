"""``Reply``: Creatio's answer to one call, with exactly what the client reads of it.

A thin shell over urllib3's response: ``status_code``, ``headers`` (case-insensitive),
``content`` (read once), ``text``, ``json()``, ``iter_content()`` for streamed downloads,
``is_redirect``, ``cookies`` (name -> value of every ``Set-Cookie``), ``close()`` and ``with``.
A failure while the body is being read (a reset, a timeout, a short body) is raised as the
project's error for ``what`` (``http.error_from_exception``), so no caller sees urllib3's
exceptions. Imports ``urllib3``; must not import ``requests`` nor the session or upload modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from urllib3 import BaseHTTPResponse, HTTPHeaderDict
from urllib3.exceptions import HTTPError

from .http import error_from_exception

#: statuses that are redirects when a ``Location`` comes with them (as requests counts them)
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Reply:
    """The answer to one call. Preloaded unless the call asked for a stream (downloads)."""

    __slots__ = ("_content", "_finished", "_raw", "_started", "headers", "status_code", "what")

    def __init__(self, raw: BaseHTTPResponse, what: str, *, preloaded: bool = True) -> None:
        self._raw = raw
        self.what = what  # method and path, for error messages
        self.status_code: int = raw.status
        self.headers: HTTPHeaderDict = raw.headers
        # ``data`` may be None for a body that was never there
        self._content: bytes | None = (raw.data or b"") if preloaded else None
        self._started = preloaded  # reading began (a stream can be read once)
        self._finished = preloaded  # the body was read to its end

    def __enter__(self) -> Reply:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Reply {self.status_code} to {self.what}>"

    # ------------------------------------------------------------------------- body
    @property
    def content(self) -> bytes:
        """The whole body (decoded from gzip/deflate), read on first use."""
        if self._content is None:
            self._start()
            try:
                self._content = self._raw.read(decode_content=True)
            except HTTPError as exc:
                raise error_from_exception(exc, self.what) from None
            self._finished = True
        return self._content

    @property
    def text(self) -> str:
        """The body as text: the charset of ``Content-Type``, else UTF-8 (never fails)."""
        charset = "utf-8"
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.content.decode(charset, "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8/16/32); ``ValueError`` when it is not JSON."""
        return json.loads(self.content)

    def iter_content(self, block: int) -> Iterator[bytes]:
        """The body in pieces of at most ``block`` bytes, without holding it in memory."""
        if self._content is not None:
            for start in range(0, len(self._content), block):
                yield self._content[start : start + block]
            return
        self._start()
        try:
            yield from self._raw.stream(block, decode_content=True)
        except HTTPError as exc:
            raise error_from_exception(exc, self.what) from None
        self._finished = True

    def _start(self) -> None:
        if self._started:
            raise RuntimeError(f"the body of {self!r} is being streamed or was streamed")
        self._started = True

    # ---------------------------------------------------------------------- headers
    @property
    def is_redirect(self) -> bool:
        """A 3xx with a ``Location``: the client never follows it (see ``session.py``)."""
        return self.status_code in REDIRECTS and "Location" in self.headers

    @property
    def cookies(self) -> dict[str, str]:
        """``name -> value`` of every ``Set-Cookie`` header (the value as sent, attributes
        dropped); later headers win. Empty when the answer sets none."""
        found: dict[str, str] = {}
        for line in self.headers.getlist("Set-Cookie"):
            pair = line.split(";", 1)[0]
            name, sep, value = pair.partition("=")
            name = name.strip()
            if sep and name:
                found[name] = value.strip()
        return found

    # ---------------------------------------------------------------------- closing
    def close(self) -> None:
        """Give the connection back to the pool; one whose body was not read to the end
        (an abandoned download) is closed instead, as its socket is mid-body."""
        if not self._finished:
            self._started = self._finished = True
            self._raw.close()
        self._raw.release_conn()
