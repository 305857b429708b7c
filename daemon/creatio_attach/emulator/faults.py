"""Fault injection: the `--faults` spec language, its seeded decisions, and the ASGI middleware.

Spec syntax (rules separated by `;`, options of a rule by `:`; whitespace around rules ignored)::

    seed=7                       the RNG seed (default: random, shown by GET /__emulator__/faults)
    503@p=0.1                    answer 10 % of matching requests with 503 (+ Retry-After)
    500@every=5                  answer every 5th matching request with 500
    429@p=0.05:retry-after=3     429 with Retry-After: 3 (503/429 only; default 1)
    502@every=3:path=/Data$      scope by a regular expression searched in the path ...
    500@p=0.5:method=PUT,POST    ... and/or by method
    drop@every=7:after=64k       read 64 KiB of the request body, then drop the connection
    latency=50ms                 delay every matching request (also `0.2s`, a range `10ms-200ms`,
                                 and a trigger: `latency=1s@p=0.1`)
    expire@after=100             each session and bearer token dies after its 100th request

A rule without a trigger applies to every matching request. All random choices come from one
`random.Random(seed)`, consumed in rule order for every request, so the same spec and the same
sequence of requests give the same faults. Faults never touch `/__emulator__/`; a rule without
`path=` also spares the login/logout calls, `connect/token`, login pages, health probes and the
web page (a rule with `path=` applies wherever its regex matches).

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

FaultKind = Literal["status", "drop", "latency", "expire"]
STATUSES = (429, 500, 502, 503)
ADMIN_PREFIX = "/__emulator__/"
TRANSPORT_KEY = "emulator.transport"


class FaultSpecError(ValueError):
    """The fault spec cannot be parsed; the message names the offending rule."""


@dataclass
class FaultRule:
    """One parsed rule with its counters."""

    text: str
    kind: FaultKind
    status: int = 0
    probability: float | None = None
    every: int | None = None
    after: int = 0  # drop: bytes of request body read first; expire: requests per session
    path: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    retry_after: int = 1
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, min and max
    matched: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, exempt: bool) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.path is not None:
            return self.path.search(path) is not None
        return not exempt

    def describe(self) -> dict[str, Any]:
        return {"rule": self.text, "kind": self.kind, "matched": self.matched, "fired": self.fired}


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request: wait `delay` seconds, then apply `action` (None: serve)."""

    delay: float = 0.0
    action: FaultRule | None = None


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")
_BYTES = re.compile(r"^(\d+)([kKmMgG]?)$")


def _duration(text: str, rule: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise FaultSpecError(f"{rule!r}: {text!r} is not a duration like 50ms or 0.5s")
    value = float(m.group(1))
    return value / 1000.0 if m.group(2) == "ms" else value


def _byte_count(text: str, rule: str) -> int:
    m = _BYTES.match(text.strip())
    if not m:
        raise FaultSpecError(f"{rule!r}: {text!r} is not a byte count like 65536, 64k or 1m")
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return int(m.group(1)) * factor


def _positive_int(text: str, rule: str, key: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FaultSpecError(f"{rule!r}: {key} must be an integer, not {text!r}") from None
    if value < 1:
        raise FaultSpecError(f"{rule!r}: {key} must be at least 1")
    return value


def _parse_rule(text: str) -> FaultRule:
    head, *options = text.split(":")
    kind_text, _, trigger = head.partition("@")
    kind_text = kind_text.strip()
    pairs: dict[str, str] = {}
    for item in ([trigger] if trigger else []) + options:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise FaultSpecError(f"{text!r}: {item!r} is not key=value")
        if key in pairs:
            raise FaultSpecError(f"{text!r}: {key} given twice")
        pairs[key] = value.strip()

    if kind_text.startswith("latency="):
        low_text, _, high_text = kind_text[len("latency=") :].partition("-")
        low = _duration(low_text, text)
        high = _duration(high_text, text) if high_text else low
        if high < low:
            raise FaultSpecError(f"{text!r}: the latency range goes backwards")
        rule = FaultRule(text=text, kind="latency", latency=(low, high))
        allowed = {"p", "every", "path", "method"}
    elif kind_text == "drop":
        rule = FaultRule(text=text, kind="drop")
        allowed = {"p", "every", "after", "path", "method"}
    elif kind_text == "expire":
        if "after" not in pairs:
            raise FaultSpecError(f"{text!r}: expire needs after=<requests>")
        rule = FaultRule(text=text, kind="expire")
        allowed = {"after"}
    elif kind_text.isdigit() and int(kind_text) in STATUSES:
        rule = FaultRule(text=text, kind="status", status=int(kind_text))
        allowed = {"p", "every", "path", "method"}
        if rule.status in (429, 503):
            allowed.add("retry-after")
    else:
        raise FaultSpecError(
            f"{text!r}: unknown fault {kind_text!r} (use 500, 502, 503, 429, drop, "
            "latency=<duration>, expire or seed=<n>)"
        )

    unknown = set(pairs) - allowed
    if unknown:
        raise FaultSpecError(f"{text!r}: unknown option(s) {', '.join(sorted(unknown))}")
    if "p" in pairs and "every" in pairs:
        raise FaultSpecError(f"{text!r}: give p= or every=, not both")
    if "p" in pairs:
        try:
            rule.probability = float(pairs["p"])
        except ValueError:
            raise FaultSpecError(f"{text!r}: p must be a number") from None
        if not 0.0 <= rule.probability <= 1.0:
            raise FaultSpecError(f"{text!r}: p must be between 0 and 1")
    if "every" in pairs:
        rule.every = _positive_int(pairs["every"], text, "every")
    if "after" in pairs:
        if rule.kind == "expire":
            rule.after = _positive_int(pairs["after"], text, "after")
        else:
            rule.after = _byte_count(pairs["after"], text)
    if "path" in pairs:
        try:
            rule.path = re.compile(pairs["path"])
        except re.error as exc:
            raise FaultSpecError(f"{text!r}: bad path regex: {exc}") from None
    if "method" in pairs:
        methods = frozenset(m.strip().upper() for m in pairs["method"].split(",") if m.strip())
        if not methods:
            raise FaultSpecError(f"{text!r}: method= needs at least one method")
        rule.methods = methods
    if "retry-after" in pairs:
        try:
            rule.retry_after = int(pairs["retry-after"])
        except ValueError:
            raise FaultSpecError(f"{text!r}: retry-after must be whole seconds") from None
        if rule.retry_after < 0:
            raise FaultSpecError(f"{text!r}: retry-after must not be negative")
    return rule


@dataclass
class FaultPlan:
    """A parsed spec: the rules, the seed and the seeded RNG. Thread-safe."""

    spec: str
    seed: int
    rules: list[FaultRule]
    expire_after: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - replayable faults, not security

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        seed: int | None = None
        rules: list[FaultRule] = []
        expire_after: int | None = None
        for raw in spec.split(";"):
            text = raw.strip()
            if not text:
                continue
            if text.startswith("seed="):
                if seed is not None:
                    raise FaultSpecError("seed given twice")
                try:
                    seed = int(text[len("seed=") :])
                except ValueError:
                    raise FaultSpecError(f"{text!r}: the seed must be an integer") from None
                continue
            rule = _parse_rule(text)
            if rule.kind == "expire":
                if expire_after is not None:
                    raise FaultSpecError("expire given twice")
                expire_after = rule.after
            rules.append(rule)
        if seed is None:
            seed = secrets.randbelow(2**31)
        return cls(spec=spec, seed=seed, rules=rules, expire_after=expire_after)

    def decide(self, method: str, path: str, exempt: bool) -> FaultDecision:
        """Advance every matching rule's trigger (in rule order); the first firing action wins."""
        delay = 0.0
        action: FaultRule | None = None
        with self._lock:
            for rule in self.rules:
                if rule.kind == "expire" or not rule.matches(method, path, exempt):
                    continue
                rule.matched += 1
                if rule.every is not None:
                    fires = rule.matched % rule.every == 0
                elif rule.probability is not None:
                    fires = self._rng.random() < rule.probability
                else:
                    fires = True
                if not fires:
                    continue
                if rule.kind == "latency":
                    low, high = rule.latency
                    delay += low if high == low else self._rng.uniform(low, high)
                    rule.fired += 1
                elif action is None:
                    action = rule
                    rule.fired += 1
        return FaultDecision(delay=delay, action=action)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "spec": self.spec,
                "seed": self.seed,
                "expire_after": self.expire_after,
                "rules": [r.describe() for r in self.rules],
            }


class Faults:
    """The current fault plan (None: no faults); replaced at run time by the admin API."""

    def __init__(self, spec: str | None = None) -> None:
        self._lock = threading.Lock()
        self._plan = FaultPlan.parse(spec) if spec else None

    @property
    def plan(self) -> FaultPlan | None:
        with self._lock:
            return self._plan

    def set_spec(self, spec: str | None) -> FaultPlan | None:
        """Install `spec` (None or blank: no faults); FaultSpecError leaves the old plan."""
        plan = FaultPlan.parse(spec) if spec and spec.strip() else None
        with self._lock:
            self._plan = plan
        return plan

    @property
    def expire_after(self) -> int | None:
        plan = self.plan
        return plan.expire_after if plan is not None else None

    def describe(self) -> dict[str, Any]:
        plan = self.plan
        if plan is None:
            return {"spec": None, "seed": None, "expire_after": None, "rules": []}
        return plan.describe()


_STATUS_BODIES: dict[int, tuple[str, bytes]] = {
    429: ("text/plain; charset=utf-8", b"Too Many Requests"),
    502: (
        "text/html; charset=utf-8",
        b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
        b"</h1></center></body></html>",
    ),
    503: (
        "text/html; charset=us-ascii",
        b"<HTML><HEAD><TITLE>Service Unavailable</TITLE></HEAD><BODY><h2>Service Unavailable"
        b"</h2><hr><p>HTTP Error 503. The service is unavailable.</p></BODY></HTML>",
    ),
}
# 500 is Creatio's own ASP.NET Web API exception body (contract section 5.5 shape 2).
_ASPNET_500 = (
    b'{"Message":"An error has occurred.","ExceptionMessage":"Injected fault (emulator)",'
    b'"ExceptionType":"System.Exception","StackTrace":null}'
)


def fault_response(rule: FaultRule) -> Response:
    """The response of a status fault; `X-Emulator-Fault` names the rule (not a Creatio header)."""
    headers = {"X-Emulator-Fault": rule.text}
    if rule.status in (429, 503):
        headers["Retry-After"] = str(rule.retry_after)
    if rule.status == 500:
        return Response(_ASPNET_500, 500, headers, media_type="application/json; charset=utf-8")
    media_type, body = _STATUS_BODIES[rule.status]
    return Response(body, rule.status, headers, media_type=media_type)


class TransportCapture:
    """Outermost middleware: remembers uvicorn's transport so that a drop fault can cut it.

    uvicorn hands the app a bound `send` of its request cycle, which holds the transport; other
    middlewares wrap `send`, so it has to be taken here, before any wrapping.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if isinstance(transport, asyncio.BaseTransport):
                scope[TRANSPORT_KEY] = transport
        await self.app(scope, receive, send)


class FaultMiddleware:
    """Applies the current plan to every request outside `/__emulator__/`."""

    def __init__(self, app: ASGIApp, faults: Faults, is_exempt: Callable[[str], bool]) -> None:
        self.app = app
        self.faults = faults
        self.is_exempt = is_exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.faults.plan
        if plan is None or scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        decision = plan.decide(scope["method"], path, self.is_exempt(path))
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        rule = decision.action
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind == "status":
            # The unread request body is discarded by the server, the connection stays usable.
            await fault_response(rule)(scope, receive, send)
        else:
            await self._drop(scope, receive, rule.after)

    async def _drop(self, scope: Scope, receive: Receive, after: int) -> None:
        received = 0
        more_body = True
        while more_body and received < after:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            more_body = bool(message.get("more_body", False))
        transport = scope.get(TRANSPORT_KEY)
        if not isinstance(transport, asyncio.Transport):
            raise ConnectionAbortedError("injected connection drop (no transport to cut)")
        transport.abort()
        # Wait until the server has seen the connection go, so it does not answer for us.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while (await receive())["type"] != "http.disconnect":
                    pass
