"""granian's process supervisor as the project runs it: workers, watchdog, draining, metrics."""
import gc
import logging
import os
import resource
import signal
import socket
import threading
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

import cherrypy
from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.http import HTTP1Settings
from granian.server import MPServer

from serving import exporter, metrics
from serving.guard import Guard
from serving.health import draining, stopping
from serving.settings import Settings
from serving.workers import (
    begin_worker,
    heartbeats,
    start_engine,
    traced_in_every_thread,
    worker_signals,
)

# Headers hyper reads into one buffer: the request line and headers must fit (else 431/414).
HEADER_BUFFER = 16 * 1024


# Descriptors kept back from connections for everything else a worker opens.
FILES_RESERVED = 64
# Seconds between two looks of the watchdog at the workers' heartbeats.
WATCH_EVERY = 1.0
# Folders under the app's that RELOAD=1 does not watch.
RELOAD_IGNORED = ['.venv', '.git', 'tests', 'bench', 'test-output', 'docs', 'deploy']


class _QuietThreadsWarning(logging.Filter):
    """Drop granian's warning that 100 threads is many: it is this template's deliberate default."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but that one warning."""
        return 'Python threads' not in record.getMessage()


# granian's own log lines go to stderr with the errors; stdout is the access log's.
GRANIAN_LOGGING = {
    'filters': {'threads': {'()': _QuietThreadsWarning}},
    'handlers': {
        'console': {'formatter': 'generic', 'class': 'logging.StreamHandler',
                    'stream': 'ext://sys.stderr', 'filters': ['threads']},
        'access': {'formatter': 'access', 'class': 'logging.StreamHandler',
                   'stream': 'ext://sys.stdout'},
    },
}


class MetricsSettings(typing.NamedTuple):
    """The supervisor's /metrics socket, the workers' shared folder, and each pool's size."""

    listener: socket.socket
    folder: str
    threads: int


class Server(MPServer):
    """granian's process supervisor, serving `app` in its workers, draining before it stops.

    With `metrics` (a MetricsSettings) it also serves /metrics (serving/metrics.py) once the workers
    are started.
    """

    def __init__(self, target: str, *, app: Guard, drain_seconds: int = 0,
                 metrics: MetricsSettings | None = None, worker_timeout: int = 0,
                 **options: Any) -> None:
        super().__init__(target, **options)
        self.app = app
        self.drain_seconds = drain_seconds
        self.metrics = metrics
        self.worker_timeout = worker_timeout

    def startup(self, spawn_target: Callable[..., None],
                target_loader: Callable[..., WSGIApplication]) -> None:
        """Start as granian does; SIGQUIT stops like SIGTERM; serve /metrics, watch the workers."""
        if self.metrics:
            exporter.preload()
        # What start-up built stays out of the collector's passes, here and in the forked workers:
        # a full collection writes to every object it visits, which copies each page a worker
        # still shares with this process into both (measured: 8-10 MB more for the tree), and
        # holds the GIL from every request thread while it walks them (18.7 ms; frozen, 0.04).
        gc.freeze()
        # granian's MPServer methods are unannotated: calling them is untyped to mypy.
        super().startup(spawn_target, target_loader)  # type: ignore[no-untyped-call]
        signal.signal(signal.SIGQUIT, self.signal_handler_interrupt)
        if self.metrics:
            exporter.serve(self.metrics.listener, self.metrics.folder)
        if self.worker_timeout:
            threading.Thread(target=self.watch_workers, name='worker-watchdog',
                             daemon=True).start()

    def watch_workers(self) -> None:
        """Kill a worker whose heartbeats stopped WORKER_TIMEOUT s ago; granian replaces it."""
        while not self.interrupt_signal:
            time.sleep(WATCH_EVERY)
            for worker in list(self.wrks):
                pid, beat = heartbeats[2 * worker.idx], heartbeats[2 * worker.idx + 1]
                silent = time.monotonic() - beat
                if pid == worker.inner.pid and silent > self.worker_timeout:
                    log(f'worker-{worker.idx + 1} (PID {int(pid)}) showed no sign of life for '
                        f'{silent:.0f} s (WORKER_TIMEOUT={self.worker_timeout}): replacing it',
                        'WORKER')
                    heartbeats[2 * worker.idx] = 0
                    os.kill(int(pid), signal.SIGKILL)

    def shutdown(self, exit_code: int = 0) -> None:
        """Stop as granian does, then remove the metrics' multiprocess folder.

        Once asked to stop, a worker that ended first is no failure: the exit stays 0.
        """
        if self.interrupt_signal:
            self.interrupt_children.clear()
        try:
            super().shutdown(exit_code)  # type: ignore[no-untyped-call]  # granian's
        finally:
            if self.metrics:
                metrics.remove_directory(self.metrics.folder)

    def load_app(self, _target: str) -> WSGIApplication:
        """Start CherryPy's engine in a worker process just forked, and return the app."""
        # granian sets pid in startup() (the supervisor's); its __init__'s None is all mypy sees.
        begin_worker(self.pid)  # type: ignore[arg-type]
        app = self.app
        if self.metrics:
            self.metrics.listener.close()  # the supervisor's, inherited by the fork
            app = app.counting(metrics.RequestMetrics(
                self.metrics.threads, sample_every=metrics.SAMPLE_EVERY))
        start_engine()
        return traced_in_every_thread(app)

    def signal_handler_interrupt(self, signum: int = signal.SIGTERM, *args: Any,
                                 **kwargs: Any) -> None:
        """On SIGTERM or SIGINT: drain first when asked to, then stop; a second one stops now."""
        if self.pid != os.getpid():
            # A worker just forked still has this handler: keep the signal for granian's own.
            worker_signals.append(signum)
            return
        if self.drain_seconds and not draining.value:
            draining.value = 1
            log(f'draining for {self.drain_seconds} s', 'SIGTERM')
            timer = threading.Timer(self.drain_seconds, self.stop)
            timer.daemon = True
            timer.start()
            return
        self.stop()

    def stop(self) -> None:
        """Stop the workers (they see stopping even if a signal missed them), then exit."""
        stopping.value = 1
        super().signal_handler_interrupt()  # type: ignore[no-untyped-call]  # granian's


def log(message: str, context: str = 'SERVER') -> None:
    """Write one line to stderr, in CherryPy's error-log format."""
    cherrypy.log(message, context)


def connections_per_worker(settings: Settings) -> int:
    """Return how many connections a worker may hold: MAX_CONNECTIONS, within the files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Each worker keeps a few descriptors of its own (listener, pipes, logs, static files).
    spare = max(soft - FILES_RESERVED, 16) // settings.workers
    return max(1, min(settings.max_connections, spare))


def build_server(settings: Settings, app: Guard, address: str, app_dir: str,
                 metrics_listener: socket.socket | None = None) -> Server:
    """Return a granian Server for `settings`, serving the WSGI `app` in its workers.

    It listens on `address` (bindable_address's), watches `app_dir` with RELOAD=1, and with
    `metrics_listener` (a bound socket) serves /metrics.
    """
    return Server(
        'landing:Landing',  # granian wants a target name; load_app() returns the app itself
        app=app,
        drain_seconds=settings.drain_seconds,
        worker_timeout=0 if settings.reload else settings.worker_timeout,
        metrics=None if metrics_listener is None else MetricsSettings(
            metrics_listener, metrics.prepare_directory(), settings.threads),
        address=address,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=settings.workers,
        blocking_threads=settings.threads,
        backlog=settings.backlog,
        # Connections each worker holds open at once; past it, new ones wait in the kernel's
        # backlog. Kept under the open-files limit, so the server never runs out of them.
        backpressure=connections_per_worker(settings),
        http=HTTPModes.http1,
        websockets=False,
        # TLS_CERT and TLS_KEY: HTTPS on the same port. TLS 1.2 at least, as load balancers
        # that re-encrypt to their targets speak it (granian's default floor is 1.3).
        ssl_cert=Path(settings.tls_cert) if settings.tls else None,
        ssl_key=Path(settings.tls_key) if settings.tls else None,
        ssl_protocol_min=SSLProtocols.tls12,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.keepalive_timeout * 1000,
            max_buffer_size=HEADER_BUFFER),
        workers_kill_timeout=settings.shutdown_timeout,
        log_dictconfig=GRANIAN_LOGGING,
        # A worker that dies (killed, out of memory, os._exit in a handler) is replaced while
        # the others serve on; one that dies again within 5.5 s of its replacement (a crash at
        # start, say) stops the server with exit 1 and "Worker crash loop detected".
        respawn_failed_workers=not settings.reload,
        # RELOAD=1 (./run.sh --dev): granian restarts the workers when a file changes. A
        # worker that cannot load the edited app (a typo) ends; the next save starts anew.
        reload=settings.reload,
        reload_ignore_worker_failure=True,
        reload_paths=[Path(app_dir)],
        reload_ignore_dirs=RELOAD_IGNORED,
        reload_tick=100,
        # granian's own exporter stays off: with it on, granian 2.8.7 starts its metrics
        # threads before forking the workers, and a worker then hung at start about one time
        # in four (measured: 1 of 4 start-ups hung with it on, 0 of 15 with it off).
        metrics_enabled=False,
    )
