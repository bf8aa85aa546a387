"""The landing page: the Landing root object, its server settings and main()."""
import datetime
import io
import logging
import os
import re
import sys
import threading
import time

import cherrypy
from cheroot.connections import ConnectionManager
from cheroot.makefile import MakeFile, StreamWriter
from cheroot.server import HTTPConnection
from cherrypy._cplogging import LogManager
from cherrypy._cpwsgi_server import CPWSGIHTTPRequest, CPWSGIServer

from healthcheck import HealthCheck

APP_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIG_PATH = os.path.join(APP_DIR, 'prod.conf')

# Built once at import: the page never changes, so no request pays for it.
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Landing</title>
<link rel="icon" href="/favicon.ico">
<link rel="stylesheet" href="/static/site.css">
</head>
<body>
<main>
<img src="/logo.png" alt="Landing logo" width="192" height="192">
<h1>Landing</h1>
<p>It works: this page is served by CherryPy from one Docker image.</p>
</main>
</body>
</html>
"""

DEFAULTS = {
    'environment': 'production',
    # production turns screen logging off; a container must log to stdout/stderr.
    'log.screen': True,
    'server.socket_host': '0.0.0.0',
    'server.socket_port': 80,
    'server.thread_pool': 100,
    'tools.trailing_slash.on': False,
    # Behind a load balancer (README, "Behind a load balancer"):
    # cheroot's backlog of 5 overflows under a burst of 50 clients; dropped SYNs cost 1 s each.
    'server.socket_queue_size': 1024,
    # AWS load balancers keep idle connections 60 s and expect the backend to outlast them.
    'server.keepalive_timeout': 75,
    # cheroot answers Connection: close past 10 idle keep-alive connections; keep every node's.
    'server.keep_alive_conn_limit': 1000,
    # How long a worker waits on a client that is sending a request or reading an answer.
    'server.socket_timeout': 10,
    'server.shutdown_timeout': 10,
    # Seconds between SIGTERM and closing the listener, failing health checks meanwhile.
    'server.drain_seconds': 0,
    # A landing page takes no uploads; oversize requests get 413/414/431-class answers.
    'server.max_request_header_size': 16 * 1024,
    'server.max_request_body_size': 64 * 1024,
}

# Environment variable -> (CherryPy setting, lowest and highest whole number it accepts).
WHOLE_NUMBER_VARIABLES = {
    'PORT': ('server.socket_port', 1, 65535),
    'THREADS': ('server.thread_pool', 1, 10000),
    'BACKLOG': ('server.socket_queue_size', 1, 65535),
    'KEEPALIVE_TIMEOUT': ('server.keepalive_timeout', 1, 86400),
    'KEEPALIVE_LIMIT': ('server.keep_alive_conn_limit', 0, 1000000),
    'REQUEST_TIMEOUT': ('server.socket_timeout', 1, 3600),
    'SHUTDOWN_TIMEOUT': ('server.shutdown_timeout', 0, 3600),
    'DRAIN_SECONDS': ('server.drain_seconds', 0, 3600),
}


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""


def _whole_number(environ, name, low, high):
    """Read environment variable `name` as a whole number in [low, high]."""
    raw = environ[name]
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(
            f'{name} must be a whole number from {low} to {high}, got {raw!r}')
    return value


def settings_from(environ):
    """Return the server settings: DEFAULTS overridden by the environment."""
    settings = dict(DEFAULTS)
    if 'HOST' in environ:
        if not environ['HOST'].strip():
            raise ConfigError(f"HOST must be an address to bind, got {environ['HOST']!r}")
        settings['server.socket_host'] = environ['HOST'].strip()
    for name, (key, low, high) in WHOLE_NUMBER_VARIABLES.items():
        if name in environ:
            settings[key] = _whole_number(environ, name, low, high)
    return settings


def error_page(status, message, traceback, version):
    """Render an error as a short page that names neither tracebacks nor versions."""
    return f'<!DOCTYPE html>\n<title>{status}</title>\n<h1>{status}</h1>\n'


# Atoms CherryPy's access log would escape: quotes, backslashes, anything unprintable.
_NEEDS_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]').search
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


def _escape(value):
    """Escape one access-log atom as CherryPy does, but only when it needs it."""
    if not _NEEDS_ESCAPE(value):
        return value
    return repr(value.replace('"', '\\"').encode('utf8'))[2:-1].replace('\\\\', '\\')


class AccessLog(LogManager):
    """CherryPy's log manager, writing the same Combined Log line for a fraction of the work.

    The stock access() builds 12 atoms per request (a uuid4 and an RFC 3339 time among them that
    the format never prints) and escapes each; that was a fifth of a request's CPU. Requests
    whose config says `request.access_log = False` (the health check) are not logged at all.
    """

    _stamp = (None, '')

    def access(self):
        """Log the current request in Apache's Combined Log Format, unless it opted out."""
        request = cherrypy.serving.request
        if not getattr(request, 'access_log', True):
            return
        if self.access_log_format != LogManager.access_log_format:
            return super().access()  # a custom format: CherryPy's general formatter
        response = cherrypy.serving.response
        status = response.output_status
        status = status.split(b' ', 1)[0].decode('ISO-8859-1') if status else '-'
        headers = request.headers
        try:
            self.access_log.log(logging.INFO, '%s - %s %s "%s" %s %s "%s" "%s"' % (
                _escape(request.remote.name or request.remote.ip),
                _escape(getattr(request, 'login', None) or '-'), self.time(),
                _escape(request.request_line), status,
                _escape(str(dict.get(response.headers, 'Content-Length', '') or '-')),
                _escape(dict.get(headers, 'Referer', '')),
                _escape(dict.get(headers, 'User-Agent', ''))))
        except Exception:
            self(traceback=True)

    def time(self):
        """Return CherryPy's [dd/Mon/yyyy:hh:mm:ss] local time, formatted once a second."""
        second = int(time.time())
        if AccessLog._stamp[0] != second:
            moment = datetime.datetime.fromtimestamp(second)
            AccessLog._stamp = (second, '[%02d/%s/%04d:%02d:%02d:%02d]' % (
                moment.day, _MONTHS[moment.month - 1], moment.year,
                moment.hour, moment.minute, moment.second))
        return AccessLog._stamp[1]


# On every answer, errors included; nothing here names a version.
RESPONSE_HEADERS = {
    'Server': 'Landing',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy':
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    'Referrer-Policy': 'strict-origin-when-cross-origin',
}


class LandingRequest(cherrypy._cprequest.Request):
    """CherryPy's request, with our error page even for errors raised before config applies."""

    # A missing Host header fails before any config is read; it must not show CherryPy's page.
    error_page = {'default': error_page}


class LandingResponse(cherrypy._cprequest.Response):
    """CherryPy's response, starting with RESPONSE_HEADERS instead of `Server: CherryPy/x.y`."""

    def __init__(self):
        super().__init__()
        self.headers.update(RESPONSE_HEADERS)


class PatientConnections(ConnectionManager):
    """cheroot's connection selector, also holding new connections until they send a request.

    Load balancers open connections before they have a request to send. cheroot hands every
    new connection straight to a worker thread, which then blocks reading for up to
    socket_timeout: 10 silent connections starve 10 threads. Here a new connection waits in
    the selector, as an idle keep-alive connection already does, and costs no thread.
    """

    def _from_server_socket(self, server_socket):
        conn = super()._from_server_socket(server_socket)
        if conn is not None:
            self.put(conn)  # to a worker once readable, like a kept-alive connection
        return None

    @property
    def can_add_keepalive_connection(self):
        """Tell whether another idle connection may be kept, without the selector's lock.

        cheroot counts under a lock the selector thread also holds; every worker asks once
        per request, and with 100 threads on one core they queued on it.
        """
        return len(self._selector._selector.get_map()) - 1 < self.server.keep_alive_conn_limit

    def _expire(self, threshold):
        # cheroot closes idle connections after socket_timeout; wait keepalive_timeout instead.
        super()._expire(threshold + self.server.timeout - self.server.keepalive_timeout)


class HeldHeadersWriter(StreamWriter):
    """cheroot's socket writer, able to hold a header block back for the first body write.

    cheroot sends an answer's headers and its body in two send() calls: two TCP segments, and
    (the socket has a timeout) two polls, each letting another of the 100 threads take the GIL.
    Held headers go out with the first body write, or at the end of the answer if none follows;
    later writes go straight out, so a streamed answer still streams.
    """

    hold_next = False
    held = b''

    def write(self, data):
        """Send data after any held headers, or hold it if asked to."""
        if self.hold_next:
            self.hold_next = False
            self.held = data
            return len(data)
        if self.held:
            data, self.held = self.held + data, b''
        return super().write(data)

    def release(self):
        """Send held headers that no body followed (HEAD, 304, an empty body)."""
        if self.held:
            held, self.held = self.held, b''
            super().write(held)


def held_headers_makefile(sock, mode='r', bufsize=io.DEFAULT_BUFFER_SIZE):
    """cheroot's MakeFile, with a HeldHeadersWriter for writing."""
    if 'w' in mode:
        return HeldHeadersWriter(sock, mode, bufsize)
    return MakeFile(sock, mode, bufsize)


class OneSendRequest(CPWSGIHTTPRequest):
    """CherryPy's cheroot request, sending the headers with the body's first write."""

    def send_headers(self):
        """Build the header block as cheroot does, and hold it back."""
        wfile = self.conn.wfile
        wfile.hold_next = isinstance(wfile, HeldHeadersWriter)
        try:
            super().send_headers()
        finally:
            wfile.hold_next = False  # a failed send_headers must not hold the next write

    def respond(self):
        """Answer as cheroot does, then send headers still held."""
        try:
            super().respond()
        finally:
            if isinstance(self.conn.wfile, HeldHeadersWriter):
                self.conn.wfile.release()


class OneSendConnection(HTTPConnection):
    """cheroot's connection, answering with OneSendRequest over a HeldHeadersWriter."""

    RequestHandlerClass = OneSendRequest

    def __init__(self, server, sock, makefile=MakeFile):
        # A TLS adapter brings its own file objects; those stay as they are.
        if makefile is MakeFile:
            makefile = held_headers_makefile
        super().__init__(server, sock, makefile)


class LoadBalancedServer(CPWSGIServer):
    """CherryPy's cheroot server with the settings CherryPy's config does not reach."""

    def __init__(self, server_adapter):
        super().__init__(server_adapter)
        # Set after CherryPy's __init__, which assigns its request class to cheroot's.
        self.ConnectionClass = OneSendConnection
        self.keep_alive_conn_limit = server_adapter.keep_alive_conn_limit
        self.keepalive_timeout = server_adapter.keepalive_timeout

    def prepare(self):
        """Bind and listen as cheroot does, then swap in PatientConnections."""
        super().prepare()
        stock, self._connections = self._connections, PatientConnections(self)
        stock.close()


def use_load_balanced_server():
    """Have cherrypy.server start a LoadBalancedServer (runs before its own start)."""
    server = cherrypy.server
    server.httpserver, server.bind_addr = server.httpserver_from_self(LoadBalancedServer(server))


def drain_then_exit():
    """On SIGTERM: fail health checks and end keep-alive for drain_seconds, then exit."""
    if Landing.healthcheck.draining.is_set():
        cherrypy.engine.exit()  # a second SIGTERM: stop waiting
        return
    Landing.healthcheck.draining.set()
    cherrypy.server.httpserver.keep_alive_conn_limit = 0  # answers say Connection: close
    cherrypy.log(f'draining for {cherrypy.server.drain_seconds} s', 'SIGTERM')
    timer = threading.Timer(cherrypy.server.drain_seconds, cherrypy.engine.exit)
    timer.daemon = True
    timer.start()


class Landing:
    """Root of the site: the landing page, with the health check mounted below it."""

    _cp_config = {
        # prod.conf names static files relative to the app folder, not the CWD.
        'tools.staticdir.root': APP_DIR,
        'tools.staticfile.root': APP_DIR,
    }

    # Present so CherryPy does not mount its own favicon; prod.conf serves ours.
    favicon_ico = None

    healthcheck = HealthCheck()

    @cherrypy.expose
    @cherrypy.tools.allow(methods=('GET', 'HEAD'))
    def index(self):
        """Return the landing page."""
        cherrypy.response.headers['Content-Type'] = 'text/html; charset=utf-8'
        return PAGE


def prepare_apps():
    """Give every mounted app our request, response and access-log classes."""
    for app in cherrypy.tree.apps.values():
        app.request_class, app.response_class = LandingRequest, LandingResponse
        app.log.__class__ = AccessLog  # the app's LogManager keeps its loggers and handlers


def configure(environ):
    """Apply DEFAULTS and environment overrides to CherryPy, and hook the engine's start."""
    settings = settings_from(environ)
    # CherryPy's log lines print none of these; looking them up cost a getpid() per request.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    cherrypy.config.update(settings)
    # cherrypy.server starts at priority 75: swap its server class in just before.
    cherrypy.engine.subscribe('start', use_load_balanced_server, priority=70)
    cherrypy.engine.subscribe('start', prepare_apps, priority=10)
    if settings['server.drain_seconds']:
        cherrypy.engine.signal_handler.handlers['SIGTERM'] = drain_then_exit
    return settings


def main(environ=os.environ):
    """Configure from the environment and serve Landing until signalled."""
    try:
        settings = configure(environ)
    except ConfigError as error:
        sys.exit(f'landing: {error}')
    cherrypy.log(
        f"host={settings['server.socket_host']} "
        f"port={settings['server.socket_port']} "
        f"threads={settings['server.thread_pool']}", 'SETTINGS')
    cherrypy.quickstart(Landing(), '/', CONFIG_PATH)


if __name__ == '__main__':
    main()
