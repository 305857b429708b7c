"""Runs the emulator: uvicorn in a background thread (`EmbeddedEmulator`) and the foreground runner.

`EmbeddedEmulator` binds its socket itself (so port 0 gives a free port known before start),
serves until `stop()`, and removes the temporary data directory it made. With a TLS certificate
and key in the options it serves HTTPS (uvicorn's `ssl_certfile`/`ssl_keyfile`), and `url` starts
with `https://`; the pair is loaded once before anything starts, so a bad file is one clear
`EmulatorStartError`. `run_foreground` is what `creatio-attach emulator` calls: it prints
`listening on http://HOST:PORT` (or `https://`) once connections are accepted and returns 0 after
SIGINT or SIGTERM.

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import uvicorn

from creatio_attach.emulator.options import EmulatorOptions

if TYPE_CHECKING:
    from creatio_attach.emulator.app import EmulatorApp
    from creatio_attach.emulator.store import Store

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class EmulatorStartError(RuntimeError):
    """The server did not come up (port taken, data directory unusable, ...)."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets (else Nagle
    # and delayed ACKs add ~40 ms to every keep-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key and hang.
    raise EmulatorStartError("the TLS key is encrypted; give an unencrypted PEM key")


def check_tls_files(cert: Path, key: Path) -> None:
    """Load the certificate and key as uvicorn will; `EmulatorStartError` names what is wrong."""
    for path in (cert, key):
        if not path.is_file():
            raise EmulatorStartError(f"cannot read the TLS file {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_refuse_password)
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        raise EmulatorStartError(
            f"cannot use the TLS certificate {cert} with the key {key}: {reason} "
            "(both must be PEM files, and the key must belong to the certificate)"
        ) from None
    except OSError as exc:
        raise EmulatorStartError(
            f"cannot read the TLS files {cert} and {key}: {exc.strerror or type(exc).__name__}"
        ) from None


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop cuts idle TLS connections instead of closing them.

    Closing a TLS connection politely waits for the peer's close_notify, which an idle
    keep-alive client (a pooled `requests` connection) never sends: every stop would wait out
    the whole graceful timeout and log an error. Plain HTTP connections close at once anyway.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.config.is_ssl:
            for connection in list(self.server_state.connections):
                cycle: Any = getattr(connection, "cycle", None)  # h11 protocol internals
                transport: Any = getattr(connection, "transport", None)
                if transport is not None and (cycle is None or cycle.response_complete):
                    transport.abort()
        await super().shutdown(sockets)


class EmbeddedEmulator:
    """The emulator on a real socket, served by uvicorn in a daemon thread."""

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions()
        self._app: EmulatorApp | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._temp_dir: Path | None = None
        self._stopped = False
        self.data_dir: Path | None = None
        self.port = 0
        self.url = ""
        self.ws_url = ""
        self.odata_url = ""

    def __repr__(self) -> str:
        return f"EmbeddedEmulator(url={self.url!r}, runtime={self.options.runtime!r})"

    @property
    def app(self) -> EmulatorApp:
        if self._app is None:
            raise RuntimeError("the emulator is not started")
        return self._app

    @property
    def store(self) -> Store:
        return self.app.store

    def start(self) -> EmbeddedEmulator:
        """Open the store, bind, serve; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        from creatio_attach.emulator.app import build_app

        options = self.options
        if options.tls_cert is not None and options.tls_key is not None:
            check_tls_files(options.tls_cert, options.tls_key)
        if options.data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="creatio-emulator-"))
            self.data_dir = self._temp_dir
        else:
            self.data_dir = Path(options.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._sock = _bind(options.host, options.port)
            self._app = build_app(options, self.data_dir)
        except BaseException:
            self._cleanup()
            raise
        self.port = int(self._sock.getsockname()[1])
        host = f"[{options.host}]" if ":" in options.host else options.host
        self.url = f"{options.scheme}://{host}:{self.port}"
        self.ws_url = self.url + options.workspace_prefix
        self.odata_url = self.ws_url + "/odata"

        config = uvicorn.Config(
            self._app.asgi,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            timeout_keep_alive=30,
            limit_concurrency=None,
            timeout_graceful_shutdown=5,
            server_header=False,
            ssl_certfile=options.tls_cert,
            ssl_keyfile=options.tls_key,
        )
        self._server = _Server(config)
        sock = self._sock
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]),
            name=f"emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EmulatorStartError(f"the emulator did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving, close the store, remove the temporary data directory; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._app is not None:
            self._app.store.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> EmbeddedEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_foreground(options: EmulatorOptions, out: TextIO = sys.stdout) -> int:
    """Serve until SIGINT/SIGTERM; print the listening line once; return the exit code (0)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        emulator = EmbeddedEmulator(options).start()
        try:
            plan = emulator.app.faults.plan
            if plan is not None:  # the seed is what a failing run needs to be replayed
                print(f"faults: {plan.spec} (seed={plan.seed})", file=sys.stderr, flush=True)
            print(f"listening on {emulator.url}", file=out, flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
    finally:
        for signum, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)
    return 0
