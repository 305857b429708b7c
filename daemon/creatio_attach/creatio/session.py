"""One authenticated connection to a Creatio site: login, re-login, runtime detection, logout.

Every call goes through :meth:`Connection.request`, which adds the auth headers (all login
cookies + ``BPMCSRF`` + ``ForceUseSession: true``, or a bearer token), never follows
redirects, and turns an ended session (401, or a 3xx to the login page, or the login page
itself) into exactly ONE re-login shared by all threads (single-flight on a generation
counter) before repeating the request once. Cookies live in ``AuthState`` only: the login's
``Set-Cookie`` headers make it, and those of data answers renew it (sliding ``.ASPXAUTH``
expiry). No retries of data calls here (see ``retry.py``).

The wire is ``transport.Transport`` (urllib3 pools built once, here, with the environment's
proxy and CA settings read once; see that module for why not requests). The OAuth identity
service may be another host with proxy rules of its own: it gets its own transport then.
A proxy variable changed later needs a restart, like every ``[creatio]`` setting.
Must not import ``requests`` or ``urllib3`` (the transport does), nor the upload/query modules.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlencode, urlsplit

import structlog

from creatio_attach.config import CreatioSettings
from creatio_attach.errors import (
    CreatioAuthFailed,
    CreatioError,
    CreatioRejected,
    CreatioUnavailable,
)

from .http import (
    error_from_response,
    json_dumps,
    looks_like_login_page,
    response_json,
    where,
)
from .reply import Reply
from .retry import Retrier
from .transport import Payload, Transport, proxy_for

log = structlog.get_logger()

Runtime = Literal["netframework", "netcore"]
#: a body, or a factory of one (so that a repeated request gets a fresh stream)
Body = Payload | Callable[[], Payload]

LOGIN_PATH = "/ServiceModel/AuthService.svc/Login"
LOGOUT_PATH = "/ServiceModel/AuthService.svc/Logout"
DEFAULT_TOKEN_LIFETIME = 3600.0
#: refresh a token this long before it expires (a tenth of short test lifetimes)
TOKEN_MARGIN = 30.0


@dataclass(frozen=True)
class AuthState:
    """What one login produced. Never logged; ``__repr__`` hides the values."""

    generation: int
    kind: Literal["forms", "oauth2"]
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # monotonic; tokens only
    refresh_at: float | None = None

    _headers: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def headers(self) -> dict[str, str]:
        """The auth headers of this login (built once: the state is immutable). A copy."""
        if self._headers is None:
            object.__setattr__(self, "_headers", self._build_headers())
        assert self._headers is not None
        return dict(self._headers)

    def _build_headers(self) -> dict[str, str]:
        if self.kind == "oauth2":
            return {"Authorization": f"Bearer {self.token}"}
        headers = {
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "ForceUseSession": "true",
        }
        csrf = self.cookies.get("BPMCSRF")
        if csrf is not None:
            headers["BPMCSRF"] = csrf
        return headers


def default_token_url(url: str) -> str:
    """Cloud rule ``acme.creatio.com`` -> ``https://acme-is.creatio.com/connect/token``;
    any other host: ``{url}/connect/token`` (set ``token_url`` for an on-site identity service)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.endswith(".creatio.com") and host.count(".") == 2:
        name = host.split(".", 1)[0]
        return f"https://{name}-is.creatio.com/connect/token"
    return f"{url.rstrip('/')}/connect/token"


class Connection:
    """The authenticated transport shared by every thread of one client."""

    def __init__(self, settings: CreatioSettings, retrier: Retrier) -> None:
        self.settings = settings
        self.retrier = retrier
        self.root = settings.url.rstrip("/")
        self._runtime: Runtime | None = None if settings.runtime == "auto" else settings.runtime
        self.probe_metadata: bytes | None = None  # $metadata fetched by the runtime probe
        self._state: AuthState | None = None
        self._generation = 0
        self._lock = threading.Lock()  # single-flight login; guards _state replacement
        self.logins = 0
        # the pools and the environment's proxy and CA settings: made and read here, once
        self.transport = Transport(self.root, settings)
        self.token_url = settings.token_url or default_token_url(self.root)
        self.identity = self.transport  # where OAuth tokens come from
        if settings.auth == "oauth2" and proxy_for(self.token_url) != self.transport.proxy:
            self.identity = Transport(self.token_url, settings)

    # ----------------------------------------------------------------- URLs and runtime
    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self.login()
        assert self._runtime is not None
        return self._runtime

    @property
    def ws(self) -> str:
        """Workspace base: ``{root}/0`` on .NET Framework, ``{root}`` on .NET Core."""
        return f"{self.root}/0" if self.runtime == "netframework" else self.root

    # ----------------------------------------------------------------------- login
    def login(self) -> None:
        """Log in unless a login is in place (and resolve ``runtime = auto`` once)."""
        if self._state is not None and self._runtime is not None:
            return
        with self._lock:
            if self._state is None:
                self._state = self.retrier.call(self._login_once, what="login")
            if self._runtime is None:
                self._runtime = self.retrier.call(self._detect_runtime, what="runtime probe")
                log.info("creatio.runtime", runtime=self._runtime)

    def relogin(self, failed_generation: int) -> None:
        """Single-flight re-login: only the first thread whose login ended does the work."""
        with self._lock:
            if self._state is not None and self._state.generation != failed_generation:
                return  # another thread already renewed it
            log.info("creatio.relogin", generation=failed_generation)
            # the old state stays until the new login succeeded: a failed re-login must not
            # destroy a session that might still be valid
            self._state = self.retrier.call(self._login_once, what="login")

    def current(self) -> AuthState:
        """The login to use now, refreshing a token that is about to expire."""
        state = self._state
        if state is None or self._runtime is None:
            self.login()
            state = self._state
            assert state is not None
        if state.refresh_at is not None and time.monotonic() >= state.refresh_at:
            self.relogin(state.generation)
            state = self._state
            assert state is not None
        return state

    def _login_once(self) -> AuthState:
        self._generation += 1
        self.logins += 1
        if self.settings.auth == "oauth2":
            return self._oauth_login(self._generation)
        return self._forms_login(self._generation)

    def _forms_login(self, generation: int) -> AuthState:
        settings = self.settings
        if not settings.username or settings.password is None:
            raise CreatioAuthFailed(
                "forms login needs a username and a password",
                hint="set username and password_file in [creatio]",
            )
        url = self.root + LOGIN_PATH
        what = where("POST", url)
        body = {"UserName": settings.username, "UserPassword": settings.password.get_secret_value()}
        response = self.transport.send(
            "POST",
            url,
            {
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
                "ForceUseSession": "true",
            },
            json_dumps(body),
        )
        with response:
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise error_from_response(response, what)
            reply = response_json(response)
            if response.status_code != 200 or not isinstance(reply, dict) or "Code" not in reply:
                raise CreatioAuthFailed(
                    f"the login at {what} answered {response.status_code} without a login result",
                    status=response.status_code,
                    hint="url must be the site root, e.g. https://acme.creatio.com",
                )
            if reply.get("Code") != 0:
                said = reply.get("Message") or (reply.get("Exception") or {}).get("Message")
                said = str(said) if said else "no reason given"
                raise CreatioAuthFailed(
                    f"Creatio refused the login of {settings.username}: {said}",
                    status=response.status_code,
                    creatio_message=said,
                    hint="check username and password",
                )
            cookies = response.cookies
        if not cookies:
            raise CreatioAuthFailed(
                "Creatio accepted the login but set no session cookie",
                hint="is url the site root?",
            )
        if "BPMCSRF" not in cookies:
            log.warning("creatio.login.no_bpmcsrf", cookies=sorted(cookies))
        log.info("creatio.login", auth="forms", user=settings.username, generation=generation)
        return AuthState(generation, "forms", cookies=cookies)

    def _oauth_login(self, generation: int) -> AuthState:
        settings = self.settings
        if not settings.client_id or settings.client_secret is None:
            raise CreatioAuthFailed(
                "oauth2 needs client_id and client_secret",
                hint="set client_id and client_secret_file in [creatio]",
            )
        url = self.token_url
        what = where("POST", url)
        started = time.monotonic()
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
        }
        response = self.identity.send(
            "POST",
            url,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            urlencode(form).encode("ascii"),
        )
        with response:
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise error_from_response(response, what)
            reply = response_json(response)
            token = reply.get("access_token") if isinstance(reply, dict) else None
            if response.status_code != 200 or not token:
                said = None
                if isinstance(reply, dict):
                    said = " ".join(
                        str(reply[k]) for k in ("error", "error_description") if reply.get(k)
                    )
                hint = "check client_id and client_secret"
                if "html" in response.headers.get("Content-Type", ""):
                    hint = "token_url answered with a web page: point it at the identity service"
                raise CreatioAuthFailed(
                    f"the identity service at {what} refused the token request"
                    + (f": {said}" if said else f" ({response.status_code})"),
                    status=response.status_code,
                    creatio_message=said or None,
                    hint=hint,
                )
            try:
                lifetime = float(reply.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
            except (TypeError, ValueError):
                lifetime = DEFAULT_TOKEN_LIFETIME
        margin = min(TOKEN_MARGIN, lifetime / 10)
        log.info("creatio.login", auth="oauth2", client_id=settings.client_id, expires_in=lifetime)
        return AuthState(
            generation,
            "oauth2",
            token=str(token),
            expires_at=started + lifetime,
            refresh_at=started + lifetime - margin,
        )

    # ------------------------------------------------------------------- runtime probe
    def _detect_runtime(self) -> Runtime:
        """Probe ``GET {root}/odata/$metadata`` first: only .NET Core serves OData at the root
        (.NET Framework serves it under ``/0`` only, while .NET Core also accepts ``/0``), so
        probing ``/0`` first could not tell them apart. A 200 with a CSDL document decides;
        anything else falls through to ``{root}/0/odata/$metadata``. The document is kept as
        the client's ``$metadata`` so the probe costs nothing extra."""
        state = self._state
        assert state is not None
        last: Reply | None = None
        for runtime, prefix in (("netcore", ""), ("netframework", "/0")):
            url = f"{self.root}{prefix}/odata/$metadata"
            headers = {**state.headers(), "Accept": "application/xml"}
            with self.transport.send("GET", url, headers) as response:
                content = response.content
                if response.status_code == 200 and b"Edmx" in content[:4096]:
                    self.probe_metadata = content
                    return "netcore" if runtime == "netcore" else "netframework"
                last = response
        assert last is not None
        what = where("GET", f"{self.root}/0/odata/$metadata")
        if last.status_code == 401 or looks_like_login_page(last):
            raise CreatioAuthFailed(
                "logged in, but Creatio's OData service refused the session",
                status=last.status_code,
                hint="the user may lack the right to use OData",
            )
        error = error_from_response(last, what)
        if isinstance(error, CreatioRejected):
            raise CreatioRejected(
                f"no OData service at {self.root}/odata nor {self.root}/0/odata "
                f"(last answer {last.status_code})",
                status=last.status_code,
                hint="url must be the site root; or set runtime explicitly",
            )
        raise error

    # -------------------------------------------------------------------------- calls
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
    ) -> Reply:
        """Send one call with the current login; re-login once if it ended, repeat once.

        ``body`` may be a factory so that the repeated request gets a fresh stream.
        Returns the answer for a status in ``ok`` (the caller closes it; ``stream`` leaves its
        body unread); raises a project error otherwise.
        """
        what = where(method, url)
        state = self.current()
        response = self._send(method, url, state, headers, body, stream)
        if self._ended(response, stream):
            response.close()
            self.relogin(state.generation)
            state = self.current()
            response = self._send(method, url, state, headers, body, stream)
            if self._ended(response, stream):
                response.close()
                raise CreatioUnavailable(
                    f"the session ended again right after a new login ({what})",
                    status=response.status_code,
                )
        if response.status_code not in ok:
            try:
                if stream:
                    response.content  # noqa: B018 - read the error body before closing
                raise error_from_response(response, what)
            finally:
                response.close()
        self._absorb_cookies(response, state)
        return response

    def _send(
        self,
        method: str,
        url: str,
        state: AuthState,
        headers: Mapping[str, str] | None,
        body: Body,
        stream: bool,
    ) -> Reply:
        merged = {"Accept": "application/json", **(headers or {}), **state.headers()}
        data = body() if callable(body) else body
        return self.transport.send(method, url, merged, data, stream=stream)

    @staticmethod
    def _ended(response: Reply, stream: bool) -> bool:
        """401, a redirect to the login page, or (not for downloads) the login page itself."""
        if response.status_code == 401:
            return True
        if response.is_redirect:
            return looks_like_login_page(response)
        if response.status_code == 200 and not stream:
            return looks_like_login_page(response)
        return False

    def _absorb_cookies(self, response: Reply, state: AuthState) -> None:
        """Keep cookies Creatio renews on data calls (sliding .ASPXAUTH expiry)."""
        if state.kind != "forms":
            return
        fresh = response.cookies
        if not fresh or all(state.cookies.get(k) == v for k, v in fresh.items()):
            return
        with self._lock:
            current = self._state
            if current is not None and current.generation == state.generation:
                self._state = replace(current, cookies={**current.cookies, **fresh})

    # ----------------------------------------------------------------------- logout
    def close(self) -> None:
        """Log out (best effort: frees the licence seat) and close the pool."""
        with self._lock:
            state, self._state = self._state, None
        try:
            if state is not None and state.kind == "forms":
                headers = {**state.headers(), "Content-Type": "application/json"}
                try:
                    with self.transport.send(
                        "POST", self.root + LOGOUT_PATH, headers, b"{}", read_timeout=10.0
                    ) as response:
                        log.info("creatio.logout", status=response.status_code)
                except CreatioError as exc:
                    log.info("creatio.logout.failed", error=exc.message)
        finally:
            self.transport.close()
            self.identity.close()
