"""Tell systemd how the service is doing (sd_notify): ready, status, more start time, watchdog,
stopping.

The protocol is a few ``KEY=value`` lines in one datagram to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract socket written ``@name``). Outside systemd the
variable is unset and every call here is a no-op, so the service calls it unconditionally
(maestral's ``utils/integration.py`` does the same in a few lines; no libsystemd needed).

``Heartbeat`` sends ``WATCHDOG=1`` at half of ``WatchdogSec=`` but only while a liveness
callback says the service is really working: when a worker hangs the pings stop and systemd
restarts the service, which is the point of a watchdog.

Imports only the standard library; nothing from the project, so any layer may use it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping
from types import TracebackType

__all__ = ["Heartbeat", "Notifier", "notify", "start_heartbeat", "watchdog_interval"]


def _address(value: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as a socket address: a path, or ``@name`` for the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used for system services


class Notifier:
    """Sends notifications to systemd; every method is a harmless no-op outside systemd.

    Thread-safe: the service's threads share one instance. A failing send (systemd gone,
    socket full) never raises; the method returns False instead.
    """

    def __init__(self, socket_name: str | None = None, env: Mapping[str, str] | None = None):
        if socket_name is None:
            socket_name = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        self._address = _address(socket_name)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._status: str | None = None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notification socket."""
        return self._address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it was sent.

        Keys are written as given (``READY=1`` is ``notify(READY=1)``).
        """
        if self._address is None or not fields:
            return False
        payload = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(payload, self._address)
            except OSError:
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: config loaded, journal open, Creatio tried, every inbox watched."""
        if status is not None and self._remember(status):
            return self.notify(READY=1, STATUS=status)
        return self.notify(READY=1)

    def reloading(self) -> bool:
        """``RELOADING=1`` (on SIGHUP); follow it with ``ready()`` once the new config is in."""
        return self.notify(RELOADING=1)

    def status(self, text: str) -> bool:
        """``STATUS=text``, sent only when it differs from the last one (``systemctl status``)."""
        text = text.replace("\n", " ")
        if not self._remember(text):
            return False
        return self.notify(STATUS=text)

    def extend_timeout(self, seconds: float, status: str | None = None) -> bool:
        """``EXTEND_TIMEOUT_USEC``: allow the start (or stop) this much longer from now, with a
        ``STATUS`` that says why (systemd 236 or later; older ones ignore it)."""
        fields: dict[str, str | int] = {"EXTEND_TIMEOUT_USEC": round(seconds * 1_000_000)}
        if status is not None:
            status = status.replace("\n", " ")
            self._remember(status)
            fields["STATUS"] = status
        return self.notify(**fields)

    def _remember(self, status: str) -> bool:
        """Make ``status`` the last one sent; True when it differs from the one before."""
        with self._lock:
            changed = status != self._status
            self._status = status
        return changed

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down; send it first thing in the stop path."""
        return self.notify(STOPPING=1)

    def watchdog_ping(self) -> bool:
        """``WATCHDOG=1``: the service is alive. Prefer ``Heartbeat``, which checks first."""
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __repr__(self) -> str:
        return f"Notifier(enabled={self.enabled})"


def notify(**fields: str | int) -> bool:
    """One-off notification through ``$NOTIFY_SOCKET``; False outside systemd."""
    notifier = Notifier()
    try:
        return notifier.notify(**fields)
    finally:
        notifier.close()


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """``WatchdogSec=`` in seconds, or None when systemd expects no pings from this process.

    ``WATCHDOG_USEC`` is the interval; when ``WATCHDOG_PID`` is set the pings are expected only
    from that process (a child that inherited the environment must not ping).
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = env.get("WATCHDOG_PID", "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000


class Heartbeat:
    """A thread that sends ``WATCHDOG=1`` every ``interval / 2`` seconds while ``alive()`` is True.

    ``alive`` is the service's own judgement ("the watcher and every worker thread are alive
    and making progress"); when it returns False or raises, that beat is skipped, so systemd's
    watchdog fires after ``interval`` without pings. ``stop()`` ends the thread and waits for it.
    """

    def __init__(self, notifier: Notifier, interval: float, alive: Callable[[], bool]):
        if interval <= 0:
            raise ValueError("the watchdog interval must be positive")
        self.notifier = notifier
        self.interval = interval
        self.period = interval / 2
        self._alive = alive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self.pings = 0
        self.skipped = 0

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            ok = bool(self._alive())
        except Exception:  # a broken liveness check means "not alive", never a dead thread
            ok = False
        if ok and self.notifier.watchdog_ping():
            self.pings += 1
        elif not ok:
            self.skipped += 1

    def _run(self) -> None:
        self._beat()  # at once: the previous ping may be up to a period old
        while not self._stop.wait(self.period):
            self._beat()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_heartbeat(
    notifier: Notifier, alive: Callable[[], bool], env: Mapping[str, str] | None = None
) -> Heartbeat | None:
    """A started ``Heartbeat`` when systemd asked this process for pings, else None."""
    interval = watchdog_interval(env)
    if interval is None or not notifier.enabled:
        return None
    return Heartbeat(notifier, interval, alive).start()
