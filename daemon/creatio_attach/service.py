"""The composition root of ``creatio-attach run``: config -> journal, client, engine, watcher.

Builds every part, wires the real adapters into the engine's Protocols, installs the signal
handlers (SIGTERM/SIGINT: stop taking files, let uploads in flight finish within
``daemon.grace``, exit 0; SIGHUP: reload the config without dropping work), and feeds
sd_notify (``notify``) and the metrics server (``metrics``) when they are configured. The
adapters live in ``adapters`` (and ``dispose``), the dry run in ``dryrun``; both are re-exported
here.

The only module that knows every other one; nothing imports it but ``cli``/``daemon_cli``
(and tests). It may import any project module; heavy ones (the client, the journal, the
watcher, metrics) are imported inside ``run`` so that importing it stays cheap.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from creatio_attach.adapters import (
    ClientCreatio,
    DetectInspector,
    RecordingsParentMatcher,
    build_matchers,
    confine_roots,
    policy_from_settings,
    watch_specs,
)
from creatio_attach.config import Config, load_config
from creatio_attach.confine import Roots
from creatio_attach.dispose import LocalFolders
from creatio_attach.dryrun import Planned, dry_run
from creatio_attach.engine import Engine
from creatio_attach.errors import ConfigError, CreatioAuthFailed, CreatioUnavailable
from creatio_attach.ports import EngineObserver, SystemClock

if TYPE_CHECKING:
    from creatio_attach.creatio import CreatioClient
    from creatio_attach.journal import Journal
    from creatio_attach.watcher import InboxWatcher

log = structlog.get_logger(component="service")

TICK = 0.5  # seconds between looks at signals and the status line
COUNTS_EVERY = 5.0  # seconds between journal counts for the metrics
#: while Creatio is unreachable, the service logs in this often to find out that it is back
#: even when no file is waiting (STATUS, the reachable gauge and /healthz follow)
PROBE_EVERY = 30.0
#: the intake thread passes over its work every fraction of a second; this long without a
#: pass means it hangs (a journal lock held forever, a bug)
INTAKE_STUCK_AFTER = 120.0
#: the client's own retries may wait this long for one Retry-After within a call
#: (``creatio.retry.RetryPolicy.max_retry_after``) without moving a byte
CLIENT_RETRY_WAIT = 120.0
#: during the first scan, each ``watcher.SCAN_PROGRESS_EVERY`` files found give the start this
#: much more time (``EXTEND_TIMEOUT_USEC``): a share that lists fewer files than that in two
#: minutes is hung, and systemd's start timeout ends it
SCAN_EXTEND = 120.0


def stuck_after(timeout: float, connect_timeout: float) -> float:
    """How long a worker may be inside one job without a sign of life (a block of an upload
    sent, a Creatio call returned, a step done) before it counts as stuck and the watchdog
    stops: every blocking socket operation ends within a timeout, the client waits at most
    ``CLIENT_RETRY_WAIT`` for a Retry-After, plus a minute for local work (hashing a huge
    file). 60 s timeouts give 310 s."""
    return 2 * timeout + connect_timeout + CLIENT_RETRY_WAIT + 60.0


# ---------------------------------------------------------------------------------------------
# metrics and sd_notify


class _MetricsObserver(EngineObserver):
    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics

    def file_done(self, inbox: str, *, bytes: int, seconds: float) -> None:
        self.metrics.uploaded(inbox, bytes, seconds)

    def file_failed(self, inbox: str, *, reason: str) -> None:
        self.metrics.failed(inbox, reason)

    def file_retry(self, inbox: str, *, reason: str) -> None:
        self.metrics.retried(inbox)

    def creatio_contact(self, ok: bool) -> None:
        self.metrics.creatio_contact(ok)


# ---------------------------------------------------------------------------------------------
# the service


class Service:
    """One running daemon: ``run()`` returns the exit status."""

    def __init__(
        self,
        config_path: Path | None,
        *,
        load: Callable[[Path | None], Config] = load_config,
        install_signals: bool = True,
    ) -> None:
        self.config_path = config_path
        self._load = load
        self._install_signals = install_signals
        self._stop = threading.Event()
        self._reload = threading.Event()
        #: the folders below which no symlink is followed (``confine``); replaced on reload
        self._roots = Roots()
        self.config: Config | None = None
        self.engine: Engine | None = None
        self.watcher: InboxWatcher | None = None
        self.journal: Journal | None = None
        self.client: CreatioClient | None = None
        self._metrics: Any = None
        self._metrics_server: Any = None
        self._notifier: Any = None
        self._heartbeat: Any = None
        self._next_counts = 0.0
        self._said_stuck = False
        self._next_probe = time.monotonic() + PROBE_EVERY

    # -- signals -----------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def request_reload(self, *_: object) -> None:
        self._reload.set()

    def _signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal.received", signal=signal.Signals(signum).name)
            self._stop.set()

        def hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> int:
        if self._install_signals:
            self._signals()
        from creatio_attach.creatio import CreatioClient
        from creatio_attach.journal import Journal

        config = self._load(self.config_path)
        self.config = config
        for warning in config.warnings:
            log.warning("config.warning", warning=warning)
        if not config.inboxes:
            raise ConfigError(
                "the config has no [[inbox]]", path=str(config.path), hint="add an [[inbox]] table"
            )
        self._start_notify()
        self._roots.replace(*confine_roots(config))
        self.journal = Journal.open(config.state.dir)
        self.client = CreatioClient(config.creatio)
        try:
            self._start_metrics(config)
            reachable = self._login()
            self.engine = Engine(
                inboxes=[policy_from_settings(i) for i in config.inboxes],
                journal=self.journal,
                inspector=DetectInspector(roots=self._roots),
                folders=LocalFolders(roots=self._roots),
                creatio=ClientCreatio(self.client, self._roots),
                clock=SystemClock(),
                concurrency=config.creatio.concurrency,
                retry_base=config.daemon.retry_base,
                retry_cap=config.daemon.retry_cap,
                matchers=build_matchers(config, self.client),
                observers=[_MetricsObserver(self._metrics)] if self._metrics else [],
                stuck_after=stuck_after(config.creatio.timeout, config.creatio.connect_timeout),
            )
            self.engine.observer.creatio_contact(reachable)
            self.engine.start()
            self._start_watcher(config)
            if self._stop.is_set():
                # SIGTERM during the first scan: it ended early; the next start finds the rest
                log.info("daemon.stopped_before_ready")
                return 0
            watching = "watching " + ", ".join(i.name for i in config.inboxes)
            if not reachable:
                watching = f"Creatio unreachable, files wait and are retried; {watching}"
            self._notify("ready", watching)
            self._start_heartbeat()
            log.info("daemon.ready", inboxes=[i.name for i in config.inboxes])
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _login(self) -> bool:
        """Log in; False when Creatio is unreachable (not fatal: the service becomes ready
        and files wait in the journal). Rejected credentials raise (exit 78, no restart)."""
        assert self.client is not None
        try:
            self.client.login()
            log.info("creatio.login_ok", url=self.client.settings.url)
        except CreatioAuthFailed:
            raise
        except CreatioUnavailable as exc:
            log.warning("creatio.unreachable_at_start", error=exc.message, note="files wait")
            return False
        return True

    def _start_watcher(self, config: Config) -> None:
        from creatio_attach.watcher import InboxWatcher

        assert self.engine is not None
        watcher = InboxWatcher(watch_specs(config), self.engine.sink)
        watcher.start(progress=self._scan_progress, stop=self._stop)
        self.watcher = watcher

    def _scan_progress(self, inbox: str, found: int) -> None:
        """The first scan of a large inbox (slow on a network share) must not outlast
        ``TimeoutStartSec=`` and get the service killed before READY=1, again and again: every
        ``SCAN_PROGRESS_EVERY`` files found push the start timeout ``SCAN_EXTEND`` further."""
        if self._notifier is not None:
            self._notifier.extend_timeout(SCAN_EXTEND, f"scanning {inbox}: {found} files found")

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
            self._status()
            self._probe()

    def _probe(self) -> None:
        """Creatio was unreachable: try a login now and then, so its return is noticed."""
        if self.engine is None or self.client is None:
            return
        now = time.monotonic()
        if self.engine.status().creatio_down_since is None or now < self._next_probe:
            return
        self._next_probe = now + PROBE_EVERY
        try:
            self.client.login()
        except (CreatioUnavailable, CreatioAuthFailed) as exc:
            log.info("creatio.still_unreachable", error=exc.message)
            return
        self.engine.observer.creatio_contact(True)

    def _do_reload(self) -> None:
        assert self.engine is not None and self.config is not None
        self._notify("reloading")
        try:
            config = self._load(self.config_path)
        except ConfigError as exc:
            log.error("reload.refused", error=str(exc), note="the old config stays in force")
            self._notify("ready", "reload refused: the config has problems")
            return
        if config.state.dir != self.config.state.dir or config.creatio != self.config.creatio:
            log.warning(
                "reload.partial",
                note="[state] and [creatio] changes need a restart; inboxes were reloaded",
            )
        assert self.client is not None
        # the new inboxes' folders first: a file of a new inbox is walked from its folder
        self._roots.replace(*confine_roots(config))
        self.engine.reload(
            [policy_from_settings(i) for i in config.inboxes], build_matchers(config, self.client)
        )
        old = self.watcher
        if old is not None:
            old.stop()
        self.config = config
        try:
            self._start_watcher(config)
        except ConfigError as exc:
            log.error("reload.watch_failed", error=str(exc))
        log.info("daemon.reloaded", inboxes=[i.name for i in config.inboxes])
        self._notify("ready", "reloaded")

    def _shutdown(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()  # first, so that STOPPING=1 is the last word systemd hears
        self._notify("stopping")
        if self.watcher is not None:
            self.watcher.stop()
        clean = True
        if self.engine is not None:
            grace = self.config.daemon.grace if self.config else 30.0
            clean = self.engine.stop(grace)
        if self.client is not None:
            self.client.close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        if self.journal is not None:
            self.journal.close()
        log.info("daemon.stopped", clean=clean)

    # -- sd_notify and metrics ---------------------------------------------------------------

    def _start_notify(self) -> None:
        try:
            from creatio_attach.notify import Notifier
        except ImportError:
            return
        self._notifier = Notifier()

    def _notify(self, what: str, status: str | None = None) -> None:
        n = self._notifier
        if n is None:
            return
        if what == "ready":
            n.ready(status)
        elif what == "reloading":
            n.reloading()
        elif what == "stopping":
            n.stopping()
        elif what == "status" and status:
            n.status(status)

    def _start_heartbeat(self) -> None:
        if self._notifier is None:
            return
        from creatio_attach.notify import start_heartbeat

        self._heartbeat = start_heartbeat(self._notifier, self.alive)

    def alive(self) -> bool:
        """The systemd watchdog's test: the watcher and every engine thread run, the intake
        passes over its work, and no worker is stuck inside one job (busy without a sign of
        life for ``stuck_after`` seconds). False stops ``WATCHDOG=1``, and systemd restarts
        the service after ``WatchdogSec=``; the journal makes the restart lose nothing."""
        if self.engine is None or self.watcher is None:
            return False
        ok = self.watcher.is_alive() and self.engine.alive(INTAKE_STUCK_AFTER)
        st = self.engine.status()
        if st.stuck:
            if not self._said_stuck:
                for w in st.stuck:
                    log.error(
                        "worker.stuck",
                        worker=w.name,
                        busy_s=round(w.busy_for),
                        quiet_s=round(w.quiet_for),
                        note="the systemd watchdog pings stop; systemd restarts the service",
                    )
            self._said_stuck = True
            return False
        self._said_stuck = False
        return ok

    def _start_metrics(self, config: Config) -> None:
        if config.metrics is None:
            return
        from creatio_attach.metrics import Metrics, MetricsServer

        self._metrics = Metrics()
        self._metrics.add_inboxes(i.name for i in config.inboxes)
        limit = config.daemon.unreachable_limit

        def health() -> tuple[bool, str]:
            alive = self.watcher is not None and self.watcher.is_alive()
            ok, text = self._metrics.health(alive, limit)
            return bool(ok), str(text)

        self._metrics_server = MetricsServer(
            config.metrics.host, config.metrics.port, metrics=self._metrics, health=health
        ).start()
        log.info("metrics.listening", url=self._metrics_server.url)

    def _status(self) -> None:
        if self.engine is None:
            return
        st = self.engine.status()
        if st.creatio_down_since is not None:
            text = f"Creatio unreachable for {time.time() - st.creatio_down_since:.0f} s, retrying"
        elif st.working or st.queued:
            text = f"uploading {st.working} of {st.working + st.queued}"
        else:
            text = "idle"
        self._notify("status", text)
        now = time.monotonic()
        if self._metrics is not None and self.journal is not None and now >= self._next_counts:
            self._next_counts = now + COUNTS_EVERY  # a GROUP BY over the journal: not too often
            self._metrics.set_queue(self.journal.counts())


__all__ = [
    "ClientCreatio",
    "DetectInspector",
    "Planned",
    "RecordingsParentMatcher",
    "Service",
    "dry_run",
    "policy_from_settings",
    "watch_specs",
]
