"""A pytest plugin: CherryPy's own test suite, its apps served by cheroot or by the project's stack.

Loaded by tests/cherrypy_suite.py (`-p cherrypy_stack`) into a pytest run over modules of
`cherrypy.test`, with CHERRYPY_SERVER=cheroot or stack and CHERRYPY_PORT a free port. Each
test class's `setup_server` mounts its apps on `cherrypy.tree`; the supervisor that
`CPWebCase` starts then serves them:

- cheroot: CherryPy's own WSGI server, as the suite runs stock (only the port differs).
- stack: `cherrypy.server` starts StackHTTPServer instead of cheroot, which serves as
  landing.py is served: `serving.startup.configure` (its defaults beneath the test's own
  config), every app with the project's request class, `serving.guard.Guard` around the tree,
  and granian's WSGI worker (hyper I/O, a thread pool) on the port. The worker runs in a
  thread of the test process, as granian's own threaded server runs it, so a test that
  changes CherryPy's config or state in-process between requests acts on the server it talks
  to; tests that start
  `cherrypy.engine` themselves (test_logging) get the stack too.
"""
import os
import socket
import sys
import threading
import typing

import cherrypy
from cherrypy.process.servers import ServerAdapter
from cherrypy.test import helper
from granian._futures import _new_cbscheduler
from granian._granian import ListenerSpec, WorkerSignal, WSGIWorker
from granian._loops import loops
from granian.constants import HTTPModes
from granian.http import HTTP1Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import serving.access_log  # noqa: E402  (needs ROOT on sys.path)
import serving.bodies  # noqa: E402
import serving.guard  # noqa: E402
import serving.health  # noqa: E402
import serving.request  # noqa: E402
import serving.settings  # noqa: E402
import serving.startup  # noqa: E402
import serving.streaming  # noqa: E402
import serving.supervisor  # noqa: E402
import serving.workers  # noqa: E402

SERVER = os.environ.get('CHERRYPY_SERVER', 'cheroot')
PORT = int(os.environ.get('CHERRYPY_PORT', '54583'))
# The worker's pool: the suite's own concurrency tests open up to 15 connections at once.
THREADS = 20


def serve_in_thread(app, host, port, idle_timeout=None):
    """Serve WSGI `app` with granian's WSGI worker on host:port from a thread; return a stopper.

    The same worker, settings and callback (workers.wsgi_callback, through
    streaming.streaming_runner) as serving.workers.run_worker uses in a worker process:
    hyper's HTTP/1 with the project's header buffer, a pool of THREADS threads, and
    `idle_timeout` seconds as KEEPALIVE_TIMEOUT (the project's default unless given).
    """
    idle = serving.settings.Settings().keepalive_timeout if idle_timeout is None else idle_timeout
    sock = ListenerSpec(host, port, 128)
    stop, stopped = WorkerSignal(), threading.Event()
    stop.add_cb(stopped.set)
    ready = threading.Event()

    def run():
        loop = loops.get('auto')
        worker = WSGIWorker(
            1, (sock, None), None, 1, 512, THREADS, 30, 128, HTTPModes.http1,
            HTTP1Settings(header_read_timeout=int(idle * 1000),
                          max_buffer_size=serving.supervisor.HEADER_BUFFER),
            None, None, False, None, None, None, 'tls1.3', None, [], False, (None, None))
        callback = serving.streaming.streaming_runner(serving.workers.wsgi_callback(app))
        worker.serve_mtr(_new_cbscheduler(loop, callback), loop, stop)
        ready.set()
        stopped.wait()

    thread = threading.Thread(target=run, name='granian-worker', daemon=True)
    thread.start()
    ready.wait(10)

    def halt():
        stop.set()
        stopped.wait(10)
        thread.join(10)

    return halt


class PortSupervisor(helper.LocalWSGISupervisor):
    """CherryPy's supervisor of its WSGI server, on the run's port."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, 'port': PORT})


def tree(environ, start_response):
    """Call whatever `cherrypy.tree` is now (each test class mounts a new one)."""
    return cherrypy.tree(environ, start_response)


class Bound(typing.NamedTuple):
    """Stands for the listening socket where CherryPy asks it the port it bound."""

    address: tuple

    def getsockname(self):
        """Return the address granian listens on."""
        return self.address


class StackHTTPServer:
    """What `cherrypy.server` starts in place of cheroot: the project's stack on its address.

    `start()` runs in the engine's HTTP-server thread once every app is mounted: it applies
    serving.startup.configure (its defaults beneath the test's own config, as landing.py's
    seed and prod.conf sit above them), gives every CherryPy app the project's request class
    and log, and serves `serving.guard.Guard` around the tree with granian's WSGI worker until
    `stop()`.
    """

    ready = False
    socket = None
    timeout = None  # seconds an idle connection stays open; a test reads it as cheroot's
    wsgi_app = None  # set by CherryPy's supervisor; the tree is served whatever it holds

    def __init__(self, bind_addr):
        self.bind_addr = bind_addr
        self.stopped = threading.Event()
        self.halt = None

    def start(self):
        """Configure as landing.py is, serve the tree through the Guard, wait for stop()."""
        own = dict(cherrypy.config)
        serving.startup.configure({})
        cherrypy.config.update(own)
        # configure() hands serving to granian: here this object is that server.
        cherrypy.server.subscribe()
        serving.access_log.AccessLogs()()
        for app in cherrypy.tree.apps.values():
            if isinstance(app, cherrypy.Application):
                app.request_class = serving.request.GuardedRequest
        guard = serving.guard.Guard(
            tree, serving.health.draining, None,
            cherrypy.config.get('request.body.maxbytes', serving.bodies.MAX_BODY),
            serving.settings.Settings().body_timeout)
        host, port = self.bind_addr
        if not port:  # an ephemeral port, as cheroot binds one: a free one, named as its socket
            with socket.create_server((host, 0)) as probe:
                port = probe.getsockname()[1]
            self.socket = Bound((host, port))
        # The suite's tests wait for CherryPy's `server.socket_timeout` (10 s unless a test
        # sets it) to end an idle connection, as cheroot does: the operator's KEEPALIVE_TIMEOUT
        # here. The project's own default is 75 s, above a load balancer's idle timeout.
        self.timeout = cherrypy.server.socket_timeout
        self.halt = serve_in_thread(guard, host, port, self.timeout)
        self.ready = True
        self.stopped.wait()

    def stop(self):
        """Stop granian's worker."""
        self.ready = False
        self.socket = None
        if self.halt:
            self.halt()
        self.stopped.set()


def start_stack(self):
    """cherrypy.server.start, serving the project's stack instead of cheroot."""
    self.httpserver = StackHTTPServer(self.bind_addr)
    ServerAdapter.start(self)


start_stack.priority = 75  # as Server.start's: after the engine's other start plugins


def pytest_configure(config):
    """Serve every test's tree with the chosen server, on the run's port."""
    helper.CPWebCase.available_servers = {**helper.CPWebCase.available_servers,
                                          'wsgi': PortSupervisor}
    if SERVER == 'stack':
        # The engine holds the bound method subscribed at import: subscribe the new one.
        cherrypy.server.unsubscribe()
        cherrypy._cpserver.Server.start = start_stack
        cherrypy.server.subscribe()

