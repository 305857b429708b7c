"""Prometheus metrics and the /healthz answer, served on a small HTTP server in a thread.

``Metrics`` owns its own ``CollectorRegistry`` (never the global one, so tests and two
services in one process do not collide) and offers the few calls the service makes when
something happens. ``MetricsServer`` serves ``/metrics`` (Prometheus text format) and
``/healthz`` (200 ``ok`` or 503 with the reason) on 127.0.0.1 by default. ``health_check`` is
the pure rule behind /healthz.

Imports prometheus_client and the standard library only; nothing from the project, so the
engine's pipeline never depends on it (the service wires it in).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

__all__ = ["DURATION_BUCKETS", "Metrics", "MetricsServer", "health_check"]

#: upload durations, seconds: small files take well under a second, large recordings and
#: scans over a slow link minutes; the top bucket is ten minutes
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

Health = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]


def health_check(
    watcher_alive: bool,
    last_contact_ok_at: float | None,
    failing_since: float | None,
    limit: float,
    now: float,
) -> tuple[bool, str]:
    """The /healthz rule: (healthy, text).

    Healthy while the watcher is alive and Creatio answered at the last contact, or has been
    failing for less than ``limit`` seconds (the service is retrying). ``failing_since`` is when
    the current run of failed contacts began (None: the last contact succeeded, or none yet).
    """
    if not watcher_alive:
        return False, "the inbox watcher is not running"
    if failing_since is None:
        return True, "ok"
    down = max(0.0, now - failing_since)
    last = (
        f"last success {now - last_contact_ok_at:.0f} s ago"
        if last_contact_ok_at is not None
        else "no successful contact since start"
    )
    if down < limit:
        return True, f"ok (Creatio unreachable for {down:.0f} s, retrying; {last})"
    return False, f"Creatio unreachable for {down:.0f} s (limit {limit:.0f} s; {last})"


class Metrics:
    """Every figure the service exports, in its own registry.

    ``reason`` labels must come from a small fixed set (an error class or a rejection kind),
    never a message text, so that the number of series stays bounded.
    """

    def __init__(self, namespace: str = "creatio_attach") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, namespace
        self.files_uploaded = Counter(
            "files_uploaded", "Files uploaded to Creatio", ["inbox"], namespace=ns, registry=r
        )
        self.bytes_uploaded = Counter(
            "bytes_uploaded", "Bytes uploaded to Creatio", ["inbox"], namespace=ns, registry=r
        )
        self.failures = Counter(
            "failures",
            "Files that failed, by reason",
            ["inbox", "reason"],
            namespace=ns,
            registry=r,
        )
        self.retries = Counter(
            "retries", "Uploads scheduled for another try", ["inbox"], namespace=ns, registry=r
        )
        self.queue = Gauge(
            "queue_files",
            "Files in the journal, by state",
            ["inbox", "state"],
            namespace=ns,
            registry=r,
        )
        self.upload_duration = Histogram(
            "upload_duration_seconds",
            "Time to upload and verify one file",
            ["inbox"],
            buckets=DURATION_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.last_success = Gauge(
            "last_success_timestamp_seconds",
            "Unix time of the last successful upload",
            ["inbox"],
            namespace=ns,
            registry=r,
        )
        self.creatio_reachable = Gauge(
            "creatio_reachable",
            "1 when the last contact with Creatio succeeded, else 0",
            namespace=ns,
            registry=r,
        )
        self._lock = threading.Lock()
        self._queue_keys: set[tuple[str, str]] = set()
        self.last_contact_ok_at: float | None = None
        self.failing_since: float | None = None

    def add_inboxes(self, inboxes: Iterable[str]) -> None:
        """Create the per-inbox series at zero, so dashboards see them before the first file."""
        for inbox in inboxes:
            self.files_uploaded.labels(inbox)
            self.bytes_uploaded.labels(inbox)
            self.retries.labels(inbox)
            self.upload_duration.labels(inbox)

    def uploaded(self, inbox: str, size: int, seconds: float, now: float | None = None) -> None:
        """One file uploaded and verified: ``size`` bytes in ``seconds``."""
        self.files_uploaded.labels(inbox).inc()
        self.bytes_uploaded.labels(inbox).inc(size)
        self.upload_duration.labels(inbox).observe(seconds)
        self.last_success.labels(inbox).set(time.time() if now is None else now)

    def failed(self, inbox: str, reason: str) -> None:
        """One file failed for good (it went to failed/unmatched), or one try failed."""
        self.failures.labels(inbox, reason).inc()

    def retried(self, inbox: str) -> None:
        self.retries.labels(inbox).inc()

    def set_queue(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Journal counts ``{inbox: {state: files}}``; pairs no longer present drop to 0."""
        with self._lock:
            seen: set[tuple[str, str]] = set()
            for inbox, states in counts.items():
                for state, n in states.items():
                    self.queue.labels(inbox, state).set(n)
                    seen.add((inbox, state))
            for inbox, state in self._queue_keys - seen:
                self.queue.labels(inbox, state).set(0)
            self._queue_keys |= seen

    def creatio_contact(self, ok: bool, now: float | None = None) -> None:
        """Record the outcome of a request to Creatio (login, query or upload)."""
        now = time.time() if now is None else now
        with self._lock:
            if ok:
                self.last_contact_ok_at = now
                self.failing_since = None
            elif self.failing_since is None:
                self.failing_since = now
        self.creatio_reachable.set(1 if ok else 0)

    def health(
        self, watcher_alive: bool, limit: float, now: float | None = None
    ) -> tuple[bool, str]:
        """``health_check`` over the contacts recorded here."""
        with self._lock:
            ok_at, since = self.last_contact_ok_at, self.failing_since
        return health_check(watcher_alive, ok_at, since, limit, time.time() if now is None else now)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes every 15 s would flood the journal."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung client never blocks shutdown


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP in a background thread.

    ``port=0`` picks a free port (``.port`` tells which). ``health`` is called on every
    /healthz request and returns (healthy, text).
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 9464, *, metrics: Metrics, health: Health
    ) -> None:
        self.metrics = metrics
        self._health = health
        self._metrics_app = make_wsgi_app(metrics.registry)
        server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host.strip("[]"),
            port,
            self._app,
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-http"
        )
        self._thread.daemon = True

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the socket, wait for the thread."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            try:
                healthy, text = self._health()
            except Exception as e:  # a bug in the check must show up as unhealthy, not a 500
                healthy, text = False, f"health check failed: {type(e).__name__}"
            body = (text + "\n").encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(
                status,
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [body]
        if path == "/metrics":
            result: Iterable[bytes] = self._metrics_app(environ, start_response)
            return result
        body = b"not found: try /metrics or /healthz\n"
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]
