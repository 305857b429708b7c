"""Builds the emulator's ASGI application: the store, the middlewares, the runtime's routes.

Request path through the middlewares (outermost first): transport capture -> request log ->
faults -> body limit -> authentication/CSRF -> routes. Routes: the admin API and the web page,
AuthService.svc / connect/token / login pages / health probes, and the data routes of the data
side mounted under `/0` (both runtimes) and also at the root (netcore only).

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from creatio_attach.emulator.admin import admin_routes
from creatio_attach.emulator.auth import AuthMiddleware, PathPolicy, Sessions, auth_routes
from creatio_attach.emulator.bodies import routing_miss
from creatio_attach.emulator.faults import FaultMiddleware, Faults, TransportCapture
from creatio_attach.emulator.limits import BodyLimitMiddleware
from creatio_attach.emulator.odata import data_routes
from creatio_attach.emulator.options import EmulatorOptions
from creatio_attach.emulator.requestlog import RequestLog, RequestLogMiddleware
from creatio_attach.emulator.schemas import build_schemas
from creatio_attach.emulator.store import Store
from creatio_attach.emulator.web import web_routes


@dataclass
class EmulatorApp:
    """The ASGI app plus the state the embedding code and the admin API reach into."""

    asgi: ASGIApp
    options: EmulatorOptions
    store: Store
    sessions: Sessions
    faults: Faults
    log: RequestLog
    policy: PathPolicy


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unrouted paths answer like Creatio's Web API routing miss (contract 5.5, shape 3)."""
    if isinstance(exc, HTTPException) and exc.status_code != 404:
        return Response(status_code=exc.status_code, headers=exc.headers)
    segments = [s for s in request.url.path.split("/") if s and s != "0"]
    controller = segments[0] if segments else ""
    if len(segments) > 1 and segments[0] in ("odata", "rest", "ServiceModel", "api"):
        controller = segments[1]
    return routing_miss(str(request.url), controller)


def build_app(options: EmulatorOptions, data_dir: Path) -> EmulatorApp:
    """Open the store under `data_dir` and wire everything for `options`."""
    store = Store(data_dir, build_schemas(options.custom_schemas))
    faults = Faults(options.faults)
    sessions = Sessions(
        options.users,
        options.oauth_clients,
        session_idle=options.session_idle,
        token_lifetime=options.token_lifetime,
        faults=faults,
    )
    log = RequestLog()
    policy = PathPolicy(options.runtime)

    data = data_routes(
        store,
        max_file_bytes=options.max_file_bytes,
        ignore_client_ids=options.ignore_client_ids,
    )
    routes: list[BaseRoute] = [
        *admin_routes(store, sessions, faults, log),
        *web_routes(store, options.runtime),
        *auth_routes(sessions, policy),
        Mount("/0", routes=data),
    ]
    if options.runtime == "netcore":
        routes.extend(data)

    app: ASGIApp = Starlette(routes=routes, exception_handlers={404: _not_found})
    app = AuthMiddleware(app, sessions, policy)
    app = BodyLimitMiddleware(app, options.max_request_bytes)
    app = FaultMiddleware(app, faults, policy.is_fault_exempt)
    app = RequestLogMiddleware(app, log)
    app = TransportCapture(app)
    return EmulatorApp(
        asgi=app,
        options=options,
        store=store,
        sessions=sessions,
        faults=faults,
        log=log,
        policy=policy,
    )
