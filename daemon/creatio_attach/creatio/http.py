"""The ONE place that turns urllib3's exceptions and Creatio's HTTP answers into project errors.

Network failures, timeouts, 408/429/5xx -> ``CreatioUnavailable`` (``Retry-After`` parsed);
a 5xx whose message names a request error -> ``CreatioRejected``; other 4xx ->
``CreatioRejected`` with Creatio's message taken from whichever error shape came back
(OData envelope, ASP.NET exception, routing miss, FileApiService); a URL urllib3 cannot parse
-> ``CreatioRejected``. Messages carry the method and path, never a query string, header or
body we sent (no secret can leak), nor a proxy URL (it may hold credentials).
Imports ``urllib3`` and ``creatio_attach.errors`` only (``reply`` for type hints).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from urllib3.exceptions import (
    ConnectTimeoutError,
    IncompleteRead,
    InvalidChunkLength,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as TransportTimeout

from creatio_attach.errors import CreatioError, CreatioRejected, CreatioUnavailable

if TYPE_CHECKING:  # reply.py imports this module
    from .reply import Reply

#: statuses that say "try again later", whatever the body
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})
#: a 5xx whose message holds one of these names a fault of the request itself: retrying the
#: same request cannot help (Creatio answers these with 500; contract 5.1-5.3, 2.2)
REQUEST_ERROR_MARKERS = (
    "Column by path",  # a column or flat lookup name in $filter/$select/$orderby
    "not found in schema",
    "MaxEntityRowCount",  # more than 20,000 rows asked for
    "PRIMARY KEY",  # a duplicate Id on create
    "duplicate key",
    "FOREIGN KEY",  # a lookup (e.g. the parent) pointing at no record
    "is a collection",  # $expand of a detail collection
    "incompatible types",  # a literal of the wrong type
)
LOGIN_PAGE_MARKERS = ("/Login/", "NuiLogin", "Login.html", "bootstrap.login")
_MAX_MESSAGE = 500


def where(method: str, url: str) -> str:
    """``PUT /0/odata/CaseFile(...)/Data``: method and path only, no query string."""
    return f"{method} {urlsplit(url).path}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def creatio_message(body: Any) -> str | None:
    """Creatio's own words from any of its error shapes (contract 5.5 and 4.1)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):  # OData envelope
        message = error.get("message")
        inner = error.get("innererror")
        if isinstance(inner, dict) and inner.get("message") and inner["message"] != message:
            message = f"{message}: {inner['message']}" if message else inner["message"]
        return str(message) if message else (str(error.get("code")) or None)
    if isinstance(error, str) and error:  # FileApiService / image API
        return error
    info = body.get("errorInfo")
    if isinstance(info, dict) and info.get("message"):  # FileApiService
        return str(info["message"])
    if body.get("ExceptionMessage"):  # ASP.NET Web API exception
        return str(body["ExceptionMessage"])
    if body.get("Message"):  # routing miss, .svc fault
        detail = body.get("MessageDetail")
        return f"{body['Message']} {detail}" if detail else str(body["Message"])
    if isinstance(body.get("Exception"), dict) and body["Exception"].get("Message"):
        return str(body["Exception"]["Message"])
    return None


def response_json(response: Reply) -> Any:
    """The body as JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def looks_like_login_page(response: Reply) -> bool:
    """A 3xx to the login page, or the login page itself: the session has ended."""
    if response.is_redirect:
        location = response.headers.get("Location", "")
        return any(m in location for m in LOGIN_PAGE_MARKERS)
    if response.status_code == 200 and "html" in response.headers.get("Content-Type", ""):
        head = response.content[:20000].decode("utf-8", "replace")
        return any(m in head for m in LOGIN_PAGE_MARKERS)
    return False


def error_from_response(response: Reply, what: str) -> CreatioError:
    """The project error for an unsuccessful answer (call only when it is one)."""
    status = response.status_code
    body = response_json(response)
    message = creatio_message(body)
    if message is None and response.text and "html" not in response.headers.get("Content-Type", ""):
        message = _clip(response.text)
    message = _clip(message) if message else None
    said = f": {message}" if message else ""
    if status in RETRYABLE_STATUSES or (status >= 500 and not _names_request_error(message)):
        return CreatioUnavailable(
            f"Creatio answered {status} to {what}{said}",
            status=status,
            creatio_message=message,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    hint = None
    if status == 403:
        hint = "the user lacks rights for this object, or the BPMCSRF header was refused"
    elif status == 404:
        hint = "check the object name and that url is the site root"
    elif status == 413:
        hint = "the request is larger than the server allows; lower chunk_threshold"
    elif status in (301, 302, 303, 307, 308):
        hint = f"redirected to {urlsplit(response.headers.get('Location', '')).path or '?'}"
    return CreatioRejected(
        f"Creatio answered {status} to {what}{said}",
        status=status,
        creatio_message=message,
        hint=hint,
    )


def _names_request_error(message: str | None) -> bool:
    """Creatio answers many request errors with 500; those must not be retried. Any other 5xx
    (an injected fault, a proxy page, a restart) is worth another try."""
    return message is not None and any(m in message for m in REQUEST_ERROR_MARKERS)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what lies under it: urllib3 keeps the cause in ``reason``,
    ``original_error``, an argument or ``__cause__``; the first found is followed."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return
        yield seen
        candidates = (
            getattr(seen, "reason", None),
            getattr(seen, "original_error", None),
            *seen.args,
            seen.__cause__,
            seen.__context__,
        )
        seen = next((c for c in candidates if isinstance(c, BaseException)), None)


def _tls_detail(exc: BaseException) -> str:
    """Why certificate verification failed, found in the chain under urllib3's SSLError."""
    for seen in _chain(exc):
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
    return type(exc).__name__


def _verification_failed(exc: BaseException) -> bool:
    """True when the chain holds a failed certificate check (not a reset mid-handshake)."""
    return any(
        isinstance(seen, ssl.SSLCertVerificationError | ssl.CertificateError)
        for seen in _chain(exc)
    )


def _reason(exc: BaseException) -> str:
    """The underlying failure's class name (``ConnectionRefusedError``, ``RemoteDisconnected``):
    enough to tell refused from reset, and never a URL, header or body."""
    *_, last = _chain(exc)
    return type(last).__name__


#: failures of the connection itself, before or while an answer was read
_BROKEN = (
    ProtocolError,
    IncompleteRead,
    InvalidChunkLength,
    http.client.HTTPException,
    OSError,
)


def error_from_exception(exc: Exception, what: str) -> CreatioError:
    """The project error for a failure of the transport (urllib3 and below): before any
    answer arrived, or while its body was read."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:  # not with retries=False
        exc = exc.reason
    via = ""
    if isinstance(exc, ProxyError):  # the proxy's own failure; classify what lies under it
        via = " (through the proxy)"
        if isinstance(exc.original_error, Exception):
            exc = exc.original_error
    if isinstance(exc, SSLError | ssl.SSLError | ssl.CertificateError):
        return CreatioUnavailable(
            f"TLS failed on {what}{via}: {_tls_detail(exc)}",
            hint="check verify_tls / ca_bundle, or the server's certificate",
            # a certificate that fails verification fails the same way a second later
            retry_soon=not _verification_failed(exc),
        )
    # before the timeouts: urllib3's NewConnectionError is a ConnectTimeoutError too
    if isinstance(exc, NewConnectionError):
        return CreatioUnavailable(f"connection to Creatio failed on {what}{via}: {_reason(exc)}")
    if isinstance(exc, ConnectTimeoutError):
        return CreatioUnavailable(f"Creatio did not answer {what} in time (ConnectTimeout){via}")
    if isinstance(exc, TransportTimeout | TimeoutError):  # urllib3's ReadTimeoutError, a socket's
        return CreatioUnavailable(f"Creatio did not answer {what} in time (ReadTimeout){via}")
    if isinstance(exc, LocationValueError):
        return CreatioRejected(f"invalid URL for {what}", hint="check url in [creatio]")
    if isinstance(exc, _BROKEN):
        return CreatioUnavailable(f"connection to Creatio failed on {what}{via}: {_reason(exc)}")
    return CreatioUnavailable(f"request failed on {what}{via}: {type(exc).__name__}")


def json_body(response: Reply, what: str) -> Any:
    """A successful answer's JSON; a non-JSON success is Creatio misbehaving."""
    body = response_json(response)
    if body is None:
        raise CreatioRejected(
            f"Creatio answered {what} with {response.status_code} but no JSON",
            status=response.status_code,
        )
    return body


def json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
