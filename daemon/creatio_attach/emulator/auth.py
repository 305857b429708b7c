"""Authentication: forms login/logout, sessions, OAuth client credentials, bearer tokens and CSRF.

Holds the session and token tables (`Sessions`), the public routes of AuthService.svc,
`connect/token`, the login pages and health probes (`auth_routes`), and `AuthMiddleware`, which
authenticates every other request before it reaches a data route (contract sections
1.1-1.6, 7b, 8.2-8.4).

Must not import anything from the rest of `creatio_attach`; secrets (passwords, cookie values,
tokens) never appear in a log line, an exception message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from creatio_attach.emulator.faults import Faults
from creatio_attach.emulator.options import Runtime

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SVC_PREFIX = "/ServiceModel/AuthService.svc/"
USER_KEY = "emulator.user"
AUTH_KEY = "emulator.auth"
SESSION_KEY = "emulator.session"

LOGIN_FAILED_MESSAGE = "Invalid username or password specified."
AUTH_FAILED_FAULT = {
    "Message": "Authentication failed.",
    "StackTrace": None,
    "ExceptionType": "System.Security.Authentication.AuthenticationException",
}


@dataclass
class Session:
    """One forms session. Cookie values are secrets: kept out of repr."""

    user: str
    last_seen: float
    aspxauth: str = field(default_factory=lambda: secrets.token_hex(64).upper(), repr=False)
    session_id: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    loader: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    requests: int = 0


@dataclass
class Token:
    """One OAuth access token."""

    client_id: str
    expires_at: float
    value: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    requests: int = 0


class Sessions:
    """The session and token tables; thread-safe. `clock` is monotonic seconds."""

    def __init__(
        self,
        users: Mapping[str, str],
        oauth_clients: Mapping[str, str],
        *,
        session_idle: float,
        token_lifetime: float,
        faults: Faults,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = dict(users)
        self._clients = dict(oauth_clients)
        self.session_idle = session_idle
        self.token_lifetime = token_lifetime
        self._faults = faults
        self._clock = clock
        self._lock = threading.Lock()
        self._by_aspxauth: dict[str, Session] = {}
        self._by_session_id: dict[str, Session] = {}
        self._tokens: dict[str, Token] = {}

    def __repr__(self) -> str:
        return f"Sessions(users={sorted(self._users)}, clients={sorted(self._clients)})"

    # forms sessions
    def login(self, user: str, password: str) -> Session | None:
        expected = self._users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        session = Session(user=user, last_seen=self._clock())
        with self._lock:
            self._by_aspxauth[session.aspxauth] = session
            self._by_session_id[session.session_id] = session
        return session

    def use_session(self, aspxauth: str | None, session_id: str | None) -> Session | None:
        """The live session named by either cookie, touched and counted; None if gone."""
        now = self._clock()
        expire_after = self._faults.expire_after
        with self._lock:
            session = None
            if aspxauth:
                session = self._by_aspxauth.get(aspxauth)
            if session is None and session_id:
                session = self._by_session_id.get(session_id)
            if session is None:
                return None
            session.requests += 1
            idle = now - session.last_seen > self.session_idle
            used_up = expire_after is not None and session.requests > expire_after
            if idle or used_up:
                self._drop_session(session)
                return None
            session.last_seen = now
            return session

    def end(self, session: Session) -> None:
        with self._lock:
            self._drop_session(session)

    def _drop_session(self, session: Session) -> None:
        self._by_aspxauth.pop(session.aspxauth, None)
        self._by_session_id.pop(session.session_id, None)

    # OAuth
    def check_client(self, client_id: str, secret: str) -> bool:
        expected = self._clients.get(client_id)
        return expected is not None and hmac.compare_digest(expected.encode(), secret.encode())

    def issue_token(self, client_id: str) -> Token:
        token = Token(client_id=client_id, expires_at=self._clock() + self.token_lifetime)
        with self._lock:
            self._tokens[token.value] = token
        return token

    def use_token(self, value: str) -> Token | None:
        now = self._clock()
        expire_after = self._faults.expire_after
        with self._lock:
            token = self._tokens.get(value)
            if token is None:
                return None
            token.requests += 1
            used_up = expire_after is not None and token.requests > expire_after
            if now >= token.expires_at or used_up:
                del self._tokens[value]
                return None
            return token

    def expire_all(self) -> int:
        """End every session and token now; returns how many there were."""
        with self._lock:
            count = len(self._by_aspxauth) + len(self._tokens)
            self._by_aspxauth.clear()
            self._by_session_id.clear()
            self._tokens.clear()
        return count

    def counts(self) -> dict[str, int]:
        """Live sessions and tokens (idle sessions and expired tokens are dropped first)."""
        now = self._clock()
        with self._lock:
            for session in list(self._by_aspxauth.values()):
                if now - session.last_seen > self.session_idle:
                    self._drop_session(session)
            for value, token in list(self._tokens.items()):
                if now >= token.expires_at:
                    del self._tokens[value]
            return {"sessions": len(self._by_aspxauth), "tokens": len(self._tokens)}


class PathPolicy:
    """Which paths are public (no authentication) and which spare faults, per runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        if runtime == "netframework":
            self.login_page = "/Login/NuiLogin.aspx"
            self.login_pages = ("/Login/NuiLogin.aspx", "/0/Login/NuiLogin.aspx")
            self.health_paths = ("/0/api/HealthCheck/Ping", "/0/ping")
        else:
            self.login_page = "/Login/Login.html"
            self.login_pages = ("/Login/Login.html", "/0/Login/Login.html")
            self.health_paths = ("/api/HealthCheck/Ping", "/0/api/HealthCheck/Ping")
        self.token_paths = ("/connect/token", "/0/connect/token")
        self.discovery_paths = (
            "/.well-known/openid-configuration",
            "/0/.well-known/openid-configuration",
        )
        self._public = {"/", "/favicon.ico", *self.login_pages, *self.health_paths}
        self._public.update(self.token_paths + self.discovery_paths)

    def is_public(self, path: str) -> bool:
        """Unauthenticated: admin, web page, login pages, probes, token, AuthService but Logout."""
        if path in self._public or path.startswith(("/__emulator__/", "/static/")):
            return True
        if "/ServiceModel/AuthService.svc/" in path:
            # Logout needs the session it ends; /0/.../Login on netframework answers 401 itself.
            return not path.lower().endswith("/logout")
        return False

    def is_fault_exempt(self, path: str) -> bool:
        """Spared by fault rules that have no `path=`: everything but the data routes."""
        return self.is_public(path) or path.lower().endswith("/authservice.svc/logout")


def _svc_fault(status: int) -> JSONResponse:
    return JSONResponse(AUTH_FAILED_FAULT, status_code=status)


def _unauthenticated(scope: Scope, headers: Headers, policy: PathPolicy) -> Response:
    """401 with ForceUseSession: true (JSON fault on .svc), else a 302 to the login page."""
    path: str = scope["path"]
    if headers.get("forceusesession", "").strip().lower() == "true":
        if ".svc/" in path or path.endswith(".svc"):
            return _svc_fault(401)
        return Response(status_code=401)
    target = path
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    location = f"{policy.login_page}?ReturnUrl={quote(target, safe='')}"
    body = (
        "<html><head><title>Object moved</title></head><body>"
        f'<h2>Object moved to <a href="{location}">here</a>.</h2></body></html>'
    )
    return HTMLResponse(body, status_code=302, headers={"Location": location})


class AuthMiddleware:
    """Authenticates every non-public request by cookie session or bearer token, and checks CSRF."""

    def __init__(self, app: ASGIApp, sessions: Sessions, policy: PathPolicy) -> None:
        self.app = app
        self.sessions = sessions
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.policy.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer":
            token = self.sessions.use_token(credential.strip())
            if token is None:
                svc = ".svc/" in scope["path"]
                response = _svc_fault(401) if svc else Response(status_code=401)
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                await response(scope, receive, send)
                return
            scope[USER_KEY] = f"oauth:{token.client_id}"
            scope[AUTH_KEY] = "bearer"
            await self.app(scope, receive, send)
            return

        cookies = cookie_parser(headers.get("cookie", ""))
        session = self.sessions.use_session(cookies.get(".ASPXAUTH"), cookies.get("BPMSESSIONID"))
        if session is None:
            await _unauthenticated(scope, headers, self.policy)(scope, receive, send)
            return
        if scope["method"] in WRITE_METHODS:
            sent = headers.get("bpmcsrf", "")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                await Response(status_code=403)(scope, receive, send)
                return
        scope[USER_KEY] = session.user
        scope[AUTH_KEY] = "cookie"
        scope[SESSION_KEY] = session
        await self.app(scope, receive, send)


# --- routes -------------------------------------------------------------------------------


def _login_body(code: int, message: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Code": code,
        "Message": message,
        "Exception": None,
        "PasswordChangeUrl": None,
        "RedirectUrl": None,
    }
    if code == 0:
        body["UserType"] = "General"
    return body


def _set_session_cookies(response: Response, session: Session) -> None:
    response.set_cookie(".ASPXAUTH", session.aspxauth, path="/", httponly=True)
    response.set_cookie("BPMCSRF", session.csrf, path="/")
    response.set_cookie("BPMLOADER", session.loader, path="/", httponly=True)
    response.set_cookie(
        "UserName", quote(session.user, safe=""), path="/", httponly=True, max_age=365 * 86400
    )
    response.set_cookie("BPMSESSIONID", session.session_id, path="/", httponly=True)
    response.set_cookie("UserType", "General", path="/")


def _bad_request(message: str) -> JSONResponse:
    body = {
        "Message": message,
        "StackTrace": None,
        "ExceptionType": "System.Runtime.Serialization.SerializationException",
    }
    return JSONResponse(body, status_code=400)


def auth_routes(sessions: Sessions, policy: PathPolicy) -> list[BaseRoute]:
    """AuthService.svc, connect/token, the login page(s) and the health probes."""

    async def login(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _bad_request("The server encountered an error processing the request.")
        if not isinstance(payload, dict):
            return _bad_request("The server encountered an error processing the request.")
        user = payload.get("UserName")
        password = payload.get("UserPassword")
        session = None
        if isinstance(user, str) and isinstance(password, str):
            session = sessions.login(user, password)
        if session is None:
            return JSONResponse(_login_body(1, LOGIN_FAILED_MESSAGE))
        response = JSONResponse(_login_body(0, ""))
        _set_session_cookies(response, session)
        return response

    async def logout(request: Request) -> Response:
        session = request.scope.get(SESSION_KEY)
        if isinstance(session, Session):
            sessions.end(session)
        return Response(status_code=200)

    async def auth_service(request: Request) -> Response:
        method = request.path_params["method"].lower()
        workspace = request.url.path.startswith("/0/")
        if method == "login" and workspace and policy.runtime == "netframework":
            return _svc_fault(401)
        if method in ("login", "logout") and request.method != "POST":
            return Response(status_code=405, headers={"Allow": "POST"})
        if method == "login":
            return await login(request)
        if method == "logout":
            return await logout(request)
        return Response(status_code=403)

    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and not client_id:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, secret = unquote(basic_id), unquote(basic_secret)
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if not client_id or not sessions.check_client(client_id, secret):
            return JSONResponse({"error": "invalid_client"}, status_code=400, headers=no_store)
        grant_type = form.get("grant_type")
        if not grant_type:
            return JSONResponse({"error": "invalid_request"}, status_code=400, headers=no_store)
        if grant_type != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type"}, status_code=400, headers=no_store
            )
        issued = sessions.issue_token(client_id)
        body = {
            "access_token": issued.value,
            "expires_in": max(1, math.ceil(sessions.token_lifetime)),
            "token_type": "Bearer",
        }
        return JSONResponse(body, headers=no_store)

    async def discovery(request: Request) -> Response:
        """OIDC discovery, as newer builds serve it on the app itself (contract 1.5)."""
        issuer = str(request.base_url).rstrip("/")
        if request.url.path.startswith("/0/"):
            issuer += "/0"
        return JSONResponse(
            {
                "issuer": issuer,
                "token_endpoint": issuer + "/connect/token",
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
            }
        )

    async def login_page(request: Request) -> Response:
        page = (
            "<!DOCTYPE html><html><head><title>Creatio emulator - login</title></head><body>"
            f"<h1>Creatio emulator</h1><p>This is the login page {policy.login_page}. "
            "Sign in with POST /ServiceModel/AuthService.svc/Login "
            '(JSON {"UserName": ..., "UserPassword": ...}).</p>'
            '<script>window["bootstrap.login"] = true;</script></body></html>'
        )
        return HTMLResponse(page)

    async def ping(request: Request) -> Response:
        return PlainTextResponse("Pong")

    routes: list[BaseRoute] = []
    for prefix in ("", "/0"):
        routes.append(
            Route(
                prefix + SVC_PREFIX + "{method}",
                auth_service,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            )
        )
    routes += [Route(p, token, methods=["POST"]) for p in policy.token_paths]
    routes += [Route(p, discovery, methods=["GET"]) for p in policy.discovery_paths]
    routes += [Route(p, login_page, methods=["GET"]) for p in policy.login_pages]
    routes += [Route(p, ping, methods=["GET"]) for p in policy.health_paths]
    return routes
