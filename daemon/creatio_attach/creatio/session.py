"""One authenticated connection to a Creatio site: login, re-login, runtime detection, logout.

Owns the single ``requests.Session`` (pool sized to the concurrency, explicit timeouts, TLS
verification). Every call goes through :meth:`Connection.request`, which adds the auth
headers (all login cookies + ``BPMCSRF`` + ``ForceUseSession: true``, or a bearer token),
never follows redirects, and turns an ended session (401, or a 3xx to the login page) into
exactly ONE re-login shared by all threads (single-flight on a generation counter) before
repeating the request once. No retries of data calls here (see ``retry.py``).

The environment is read ONCE, when the connection is made, not on every request:
``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` (either case, requests' rules)
become the session's ``proxies`` for the site (and, for OAuth, the identity service's own),
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` its CA bundle (only when ``ca_bundle`` is not set and
``verify_tls`` is on), and ``trust_env`` is off: requests would otherwise scan the whole
environment twice per request. A proxy variable changed later needs a restart, like every
``[creatio]`` setting. Each call is prepared here and sent with the session's settings as they
are (``Session.request`` would merge its empty cookie jar, auth and settings again every time).
Imports ``requests``; must not import the upload/query modules.
"""

from __future__ import annotations

import http.cookiejar
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import structlog
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from creatio_attach.config import CreatioSettings
from creatio_attach.errors import (
    CreatioAttachError,
    CreatioAuthFailed,
    CreatioRejected,
    CreatioUnavailable,
)

from .http import (
    error_from_exception,
    error_from_response,
    json_dumps,
    looks_like_login_page,
    response_json,
    where,
)
from .retry import Retrier

log = structlog.get_logger()

Runtime = Literal["netframework", "netcore"]
Body = bytes | Callable[[], Any] | None

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


class _KeepNoCookies(http.cookiejar.DefaultCookiePolicy):
    """The session's own jar stores nothing: cookies live in ``AuthState`` only, so that an
    old session's cookies can never ride along with a new login or another thread's call."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


class _NoNetrc(requests.auth.AuthBase):
    """Stops requests from adding ~/.netrc credentials: auth is ours alone."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def environment_proxies(url: str) -> dict[str, str]:
    """The proxies requests would take from the environment for ``url`` (``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY``, lower case first; none when ``NO_PROXY`` covers its host),
    read now, once. The same rules as requests with ``trust_env``, minus the per-request cost."""
    return dict(requests.utils.get_environ_proxies(url, no_proxy=None))


def environment_verify(verify: bool | str) -> bool | str:
    """With TLS verification on and no ``ca_bundle``: ``REQUESTS_CA_BUNDLE``, then
    ``CURL_CA_BUNDLE``, as requests with ``trust_env`` would (read once)."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


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
        self.session = requests.Session()
        pool = max(1, settings.concurrency) + 2
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.auth = _NoNetrc()
        self.session.cookies.set_policy(_KeepNoCookies())
        # the environment is read here, once; see the module docstring
        self.session.trust_env = False
        self.session.proxies = environment_proxies(self.root)
        self.session.verify = environment_verify(
            str(settings.ca_bundle) if settings.ca_bundle is not None else settings.verify_tls
        )
        self.session.headers["User-Agent"] = "creatio-attach"
        self.timeout = (settings.connect_timeout, settings.timeout)

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
        try:
            response = self.session.post(
                url,
                data=json_dumps(body),
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Accept": "application/json",
                    "ForceUseSession": "true",
                },
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise error_from_exception(exc, what) from None
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
            cookies = {c.name: c.value or "" for c in response.cookies}
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
        url = settings.token_url or default_token_url(self.root)
        what = where("POST", url)
        started = time.monotonic()
        # the identity service may be another host, with proxy rules of its own (None unsets)
        proxies: dict[str, str | None] = dict.fromkeys(self.session.proxies)
        proxies.update(environment_proxies(url))
        try:
            response = self.session.post(
                url,
                proxies=proxies,  # type: ignore[arg-type]
                data={
                    "grant_type": "client_credentials",
                    "client_id": settings.client_id,
                    "client_secret": settings.client_secret.get_secret_value(),
                },
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise error_from_exception(exc, what) from None
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
        last: requests.Response | None = None
        for runtime, prefix in (("netcore", ""), ("netframework", "/0")):
            url = f"{self.root}{prefix}/odata/$metadata"
            try:
                response = self.session.get(
                    url,
                    headers={**state.headers(), "Accept": "application/xml"},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.exceptions.RequestException as exc:
                raise error_from_exception(exc, where("GET", url)) from None
            with response:
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

    # ----------------------------------------------------------------------- requests
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
    ) -> requests.Response:
        """Send one call with the current login; re-login once if it ended, repeat once.

        ``body`` may be a factory so that the repeated request gets a fresh stream.
        Returns the response for a status in ``ok``; raises a project error otherwise.
        """
        what = where(method, url)
        state = self.current()
        response = self._send(method, url, state, headers, body, stream, what)
        if self._ended(response, stream):
            response.close()
            self.relogin(state.generation)
            state = self.current()
            response = self._send(method, url, state, headers, body, stream, what)
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
        what: str,
    ) -> requests.Response:
        merged = CaseInsensitiveDict(self.session.headers)
        merged.update({"Accept": "application/json", **(headers or {}), **state.headers()})
        data = body() if callable(body) else body
        try:
            # what Session.request does, minus re-merging settings that never change
            prepared = requests.Request(method, url, headers=merged, data=data).prepare()
            return self.session.send(
                prepared,
                timeout=self.timeout,
                allow_redirects=False,
                stream=stream,
                verify=self.session.verify,
                proxies=self.session.proxies,
                cert=self.session.cert,
            )
        except requests.exceptions.RequestException as exc:
            raise error_from_exception(exc, what) from None
        except LocalReadError as exc:
            raise exc.error from exc.__cause__

    @staticmethod
    def _ended(response: requests.Response, stream: bool) -> bool:
        """401, a redirect to the login page, or (not for downloads) the login page itself."""
        if response.status_code == 401:
            return True
        if response.is_redirect:
            return looks_like_login_page(response)
        if response.status_code == 200 and not stream:
            return looks_like_login_page(response)
        return False

    def _absorb_cookies(self, response: requests.Response, state: AuthState) -> None:
        """Keep cookies Creatio renews on data calls (sliding .ASPXAUTH expiry)."""
        if state.kind != "forms" or not response.cookies:
            return
        fresh = {c.name: c.value or "" for c in response.cookies}
        if all(state.cookies.get(k) == v for k, v in fresh.items()):
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
                url = self.root + LOGOUT_PATH
                try:
                    response = self.session.post(
                        url,
                        headers={**state.headers(), "Content-Type": "application/json"},
                        data=b"{}",
                        timeout=(self.settings.connect_timeout, 10.0),
                        allow_redirects=False,
                    )
                    response.close()
                    log.info("creatio.logout", status=response.status_code)
                except requests.exceptions.RequestException as exc:
                    log.info("creatio.logout.failed", error=type(exc).__name__)
        finally:
            self.session.close()


class LocalReadError(Exception):
    """A local file failed while requests was reading it; ``error`` is the project error.

    Deliberately not an ``OSError``: requests would report an OSError as a network failure.
    """

    def __init__(self, error: CreatioAttachError) -> None:
        super().__init__(str(error))
        self.error = error
