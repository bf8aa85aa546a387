"""A worker process: its signals, its heartbeat, and granian's WSGI worker run to a clean stop."""
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import cherrypy
from granian._futures import _new_cbscheduler
from granian._granian import WorkerSignal, WSGIWorker
from granian._types import SSLCtx
from granian.constants import HTTPModes, RuntimeModes, TaskImpl
from granian.http import HTTP1Settings, HTTP2Settings
from granian.server.common import WORKERS_METHODS
from granian.server.mp import WorkerProcess
from granian.wsgi import Response as WSGIStart
from granian.wsgi import ResponseIterWrap

from serving.health import shared, stopping
from serving.settings import MAX_WORKERS
from serving.streaming import Runner, streaming_runner

if TYPE_CHECKING:
    from granian._granian import WSGIScope  # in granian's stub only

# Seconds between two heartbeats of a worker, and between two looks of the watchdog at them.
HEARTBEAT_EVERY = 0.1


# Each worker's (PID, time of its last heartbeat), written by the worker, read by the watchdog.
heartbeats = shared(ctypes.c_double * (2 * MAX_WORKERS))


# prctl(2) option: the signal a process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


# Signals a worker receives before run_worker's handlers are in place.
worker_signals: list[int] = []


# What stops the server or a worker gracefully (SIGQUIT too: Ctrl-backslash, some runtimes).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def die_with_supervisor(supervisor: int) -> None:
    """Have the kernel kill this worker when the supervisor dies, even by SIGKILL.

    Otherwise a worker of a killed supervisor serves on, orphaned, on the shared port. Only
    a supervisor that was itself killed leaves its workers so, and a container's PID 1 dying
    takes every process with it the same way: SIGKILL, as there. Not SIGTERM: a worker told so
    while granian is still starting it can wait forever for a shutdown event.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def note_early_signals() -> None:
    """Note SIGTERM until run_worker takes it over; ignore Ctrl-C and Ctrl-backslash.

    A terminal sends those to every process of its group: the supervisor stops the workers
    itself (SIGTERM, and stopping). A worker that stopped on its own first would count as
    an unexpected exit, replaced or reported.
    """
    signal.signal(signal.SIGTERM, lambda signum, _frame: worker_signals.append(signum))
    for signum in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)


def begin_worker(supervisor: int) -> None:
    """First steps of a worker process: note early stop signals, die with `supervisor`."""
    note_early_signals()
    die_with_supervisor(supervisor)


def start_engine() -> None:
    """Start CherryPy's engine in a worker (run_worker stops it when the worker ends).

    The engine runs its plugins and 'start' subscribers, without its signal handlers:
    granian's handle the worker's signals.
    """
    cherrypy.engine.start()


def heartbeat(slot: int, stop: Callable[[], None]) -> None:
    """Note, every HEARTBEAT_EVERY seconds, that this worker (granian's worker `slot`) runs.

    Call `stop` when the supervisor is stopping: the signal it sent may have been missed.
    """
    heartbeats[2 * slot + 1] = time.monotonic()
    heartbeats[2 * slot] = os.getpid()
    while not stopping.value:
        time.sleep(HEARTBEAT_EVERY)
        heartbeats[2 * slot + 1] = time.monotonic()
    stop()


@WorkerProcess.wrap_target
def run_worker(worker_id: int, callback: WSGIApplication, sock: Any, ipc: Any, loop: Any,
               runtime_mode: RuntimeModes, runtime_threads: int,
               runtime_blocking_threads: int | None, blocking_threads: int,
               blocking_threads_idle_timeout: int, backpressure: int, task_impl: TaskImpl,
               http_mode: HTTPModes, http1_settings: HTTP1Settings | None,
               http2_settings: HTTP2Settings | None, websockets: bool,
               static_path: tuple[str, str, str | None] | None, log_access_fmt: str | None,
               ssl_ctx: SSLCtx, scope_opts: dict[str, Any], metrics_settings: Any) -> None:
    """Serve the loaded app as granian's WSGI worker does, but stop it once, and stop clean.

    granian 2.8.7's own worker target calls its stop signal's set() on every SIGTERM or
    SIGINT, and a stop signal set before the callback that ends the worker is registered,
    or one that reaches a worker still being forked, is lost: the worker was killed 10 s
    later. Here SIGTERM sets it, once, after the callback is in place, and the supervisor's
    stopping flag covers a signal that never arrived. When granian returns, the engine
    stops in this thread, so its 'stop' subscribers run once and quietly (left to the
    process's exit, Python 3.13 runs CherryPy's atexit check first: a RuntimeWarning, then
    the engine's stop lines twice).
    """
    stop, stopped, once = WorkerSignal(), threading.Event(), threading.Lock()
    stop.add_cb(stopped.set)  # before any set(): granian calls it once the server has stopped

    def stop_once(*_: object) -> None:
        if once.acquire(blocking=False):
            stop.set()

    signal.signal(signal.SIGTERM, stop_once)
    if signal.SIGTERM in worker_signals or stopping.value:
        stop_once()
    threading.Thread(target=heartbeat, args=(worker_id - 1, stop_once), name='heartbeat',
                     daemon=True).start()
    # granian 2.8.7's stub (_granian.pyi) lacks the ipc and metrics arguments that its own
    # worker passes too (granian/server/mp.py): called as granian calls it, args unchecked.
    new_worker: Callable[..., WSGIWorker] = WSGIWorker
    worker = new_worker(
        worker_id, sock, ipc, runtime_threads, runtime_blocking_threads, blocking_threads,
        blocking_threads_idle_timeout, backpressure, http_mode, http1_settings, http2_settings,
        static_path, *ssl_ctx, metrics_settings)
    serve = getattr(worker, WORKERS_METHODS[runtime_mode][(sock[0] or sock[1]).is_uds()])
    try:
        serve(_new_cbscheduler(loop, streaming_runner(wsgi_callback(callback)),
                               impl_asyncio=task_impl == TaskImpl.asyncio), loop, stop)
        stopped.wait()
    finally:
        cherrypy.engine.exit()


# What PEP 3333 puts in every environ beside the request's own keys. granian's own callback
# starts each environ from a copy of os.environ: every variable of the process (secrets
# included) would reach the app, and HTTP_PROXY would read as a `Proxy` request header.
BASE_ENVIRON = {
    'GATEWAY_INTERFACE': 'CGI/1.1', 'SCRIPT_NAME': '', 'SERVER_SOFTWARE': 'Granian',
    'wsgi.errors': sys.stderr, 'wsgi.input_terminated': True, 'wsgi.multiprocess': False,
    'wsgi.multithread': True, 'wsgi.run_once': False, 'wsgi.version': (1, 0)}


def wsgi_callback(app: WSGIApplication) -> Runner:
    """Return granian's WSGI callback for `app`, as granian.wsgi's, with BASE_ENVIRON only."""

    def run(proto: Any, scope: 'WSGIScope') -> int:
        start = WSGIStart()
        # granian's stub calls the scope a class of its own; 2.8.7 passes a dict.
        answer = app(BASE_ENVIRON | cast('dict[str, Any]', scope), start)
        if isinstance(answer, list):
            proto.response_bytes(start.status, start.headers, b''.join(answer))
        else:
            proto.response_iter(start.status, start.headers, ResponseIterWrap(answer))
        return int(start.status)

    return run


def traced_in_every_thread(app: WSGIApplication) -> WSGIApplication:
    """Return `app`, run under the tracer `threading.settrace()` set (coverage, a debugger).

    granian calls the app from threads its Rust runtime starts, which such a tracer never
    reaches: a handler that only real requests run would look never run, and a breakpoint in
    it would never stop. With no such tracer (production) the app is returned as it is.
    """
    tracer = threading.gettrace()
    if tracer is None:
        return app

    def traced(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if sys.gettrace() is None:
            # The tracer sees the calls from here on; this line itself it cannot see.
            sys.settrace(tracer)  # pragma: no cover
        return app(environ, start_response)

    return traced
