"""How the landing app is served: settings, the HTTP server, the guard, the access log, draining.

The app (landing.py) stays a plain CherryPy app; this module serves it. Its pieces:

- Settings: the seed's `cherrypy.config.update` in landing.py, then the environment (HOST,
  PORT, THREADS, WORKERS, ...), then prod.conf. Numbers must be plain ASCII digits in range.
- The HTTP server: granian. Its Rust (hyper) I/O reads whole requests and writes whole answers
  itself, so a slow or silent client costs a socket, never a worker thread; its parser refuses
  the smuggling shapes (Content-Length with Transfer-Encoding, duplicate lengths) that cheroot
  accepts. `cherrypy.tree` is a WSGI app: granian calls it from a pool of THREADS threads in
  each of WORKERS worker processes, which granian supervises.
- The guard (`Guard`): a WSGI layer around `cherrypy.tree` for what hyper lets through and
  CherryPy handles badly: invalid or duplicate Host, request targets long enough to make
  dispatch slow, Range headers that would multiply an answer, garbage date validators, and
  granian's `HTTP/1` protocol name, header values CherryPy would parse in quadratic time or
  fail to decode before the app's config applies. It also puts the security headers on every
  answer, answers the project's 500 page whatever the app raises, reads a body only when a
  handler asks (within BODY_TIMEOUT; a read still pending then gets a 408 that drops the
  connection), sends answers up to 64 KiB in one piece and has bigger ones pulled by a thread
  of their own (so a slow reader never holds a pool thread, nor a whole file in memory). Its
  request class keeps bodies unread where nothing takes one and static files to what is in
  their folder (no dot entries, no symlinks out).
- Handlers (`tools.handler`): query parameters a handler does not take are dropped (ad links
  carry utm_*, fbclid...), and a str answer is sent as UTF-8 with its charset named.
- The access log: one Combined Log Format (or LOG_FORMAT=json) line per request on stdout,
  written by CherryPy's own hook; a handler opts out with `request.access_log = False` (the
  health check does).
- Draining: with DRAIN_SECONDS, SIGTERM first fails the health check and closes kept-alive
  connections for that long, then stops; granian then finishes in-flight requests.
- Processes: signals during start-up are kept and acted on; SIGTERM, SIGINT and SIGQUIT
  stop gracefully; a worker that dies is replaced, one silent for WORKER_TIMEOUT is killed
  and replaced, a crash loop ends the server (exit 1); workers die with their supervisor;
  RELOAD=1 restarts them on an edit and survives an app that fails to load; with
  METRICS_PORT the supervisor serves Prometheus metrics on METRICS_HOST (metrics.py).
"""
import os
import signal
import sys

# SIGTERM or Ctrl-C while the app is still importing (about 0.2 s) must stop it quietly once
# it can, not kill it: as PID 1 in a container a default SIGTERM is even ignored. Only when a
# script beside this module is being run (landing.py), never in a process importing it.
_stop_early = []
if os.path.dirname(os.path.abspath(getattr(sys.modules['__main__'], '__file__', '/'))) == \
        os.path.dirname(os.path.abspath(__file__)):
    for _signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(_signum, lambda *_: _stop_early.append(True))

import configparser  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402  (after the signal handlers, on purpose)
import email.utils  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import importlib.machinery  # noqa: E402
import inspect  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import mmap  # noqa: E402
import multiprocessing  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import typing  # noqa: E402
import urllib.parse  # noqa: E402
from pathlib import Path  # noqa: E402

import cherrypy  # noqa: E402
from cherrypy._cplogging import LogManager  # noqa: E402
from cherrypy.lib import httputil, reprconf  # noqa: E402
from cherrypy.process.wspbus import states  # noqa: E402
from granian._futures import _new_cbscheduler  # noqa: E402
from granian._granian import WorkerSignal, WSGIWorker  # noqa: E402
from granian.constants import HTTPModes, Interfaces, TaskImpl  # noqa: E402
from granian.http import HTTP1Settings  # noqa: E402
from granian.server import MPServer  # noqa: E402
from granian.server.common import WORKERS_METHODS  # noqa: E402
from granian.server.mp import WorkerProcess  # noqa: E402
from granian.wsgi import Response as WSGIStart  # noqa: E402
from granian.wsgi import ResponseIterWrap  # noqa: E402

import metrics  # noqa: E402

# How the server runs, beside the seed's host, port, threads and trailing-slash settings.
DEFAULTS = {
    'environment': 'production',
    # production turns screen logging off; a container must log to stdout/stderr.
    'log.screen': True,
    'server.workers': 1,
    # Connections held open per worker (idle keep-alive, pre-opened, slow); more wait in the
    # backlog. Silent connections cost memory only, never a thread: at worst ~48 KiB each
    # (15 KB of unfinished headers), so 768 fit the 128 MiB pod of deploy/kubernetes beside
    # the server itself (the arithmetic: docs/load-balancer.md, "A memory budget").
    'server.max_connections': 768,
    # A burst of load-balancer connections must queue, not be refused.
    'server.socket_queue_size': 1024,
    # Idle keep-alive connections (and headers still arriving) are kept this long: AWS load
    # balancers keep idle connections 60 s and expect the backend to outlast them.
    'server.keepalive_timeout': 75,
    'server.shutdown_timeout': 10,
    # Seconds between SIGTERM and stopping, failing health checks meanwhile.
    'server.drain_seconds': 0,
    # Access-log lines: Apache's Combined Log Format, or one JSON object each (LOG_FORMAT).
    'server.log_format': 'combined',
    # RELOAD=1: restart the workers when a file of the app changes (development only).
    'server.reload': 0,
    # Prometheus metrics on a port of their own, never the public one (metrics.py); 0: off.
    # 9464 is the customary port of a Prometheus exporter beside an app (OpenTelemetry's).
    'server.metrics_port': 9464,
    # Where /metrics listens: loopback unless set (the Kubernetes Deployment sets 0.0.0.0), so
    # a host port published for the site never publishes the metrics with it.
    'server.metrics_host': '127.0.0.1',
    # Seconds a worker may show no sign of life before it is killed and replaced (0: never).
    # A thread of its own beats every 0.1 s, so a handler busy in its thread never counts:
    # only a process that runs no Python at all (stopped, deadlocked, stuck in C) misses them.
    # 10 s: well past any pause of a healthy process (a GC pass, a CPU-starved node), and a
    # third of the 30 s Kubernetes' default liveness probe (3 x 10 s) takes to notice.
    'server.worker_timeout': 10,
    # A landing page takes no uploads: bigger bodies get 413.
    'server.max_request_body_size': 64 * 1024,
    # Seconds a handler that reads a body waits for all of it; a slower upload gets 408.
    'server.body_timeout': 10,
}

# LOG_FORMAT: the access log's line format.
LOG_FORMATS = ('combined', 'json')
# Folders under the app's that RELOAD=1 does not watch.
RELOAD_IGNORED = ['.venv', '.git', 'tests', 'bench', 'test-output', 'docs', 'deploy']

# Environment variable -> (setting, lowest and highest whole number it accepts).
WHOLE_NUMBER_VARIABLES = {
    'PORT': ('server.socket_port', 1, 65535),
    'THREADS': ('server.thread_pool', 1, 10000),
    'WORKERS': ('server.workers', 1, 64),
    'BACKLOG': ('server.socket_queue_size', 1, 65535),
    'MAX_CONNECTIONS': ('server.max_connections', 1, 1000000),
    'KEEPALIVE_TIMEOUT': ('server.keepalive_timeout', 1, 86400),
    'SHUTDOWN_TIMEOUT': ('server.shutdown_timeout', 1, 3600),
    'DRAIN_SECONDS': ('server.drain_seconds', 0, 3600),
    'RELOAD': ('server.reload', 0, 1),
    'METRICS_PORT': ('server.metrics_port', 0, 65535),
    'WORKER_TIMEOUT': ('server.worker_timeout', 0, 3600),
    'BODY_TIMEOUT': ('server.body_timeout', 1, 3600),
}
# Environment variable -> setting, for addresses to bind.
ADDRESS_VARIABLES = {'HOST': 'server.socket_host', 'METRICS_HOST': 'server.metrics_host'}

# Headers hyper reads into one buffer: the request line and headers must fit (else 431/414).
HEADER_BUFFER = 16 * 1024
# Longest request target (path and query) the guard passes to CherryPy; longer gets 414.
# CherryPy's dispatch and config lookup cost grows with the path: 8,000 segments took 0.4 s.
MAX_TARGET = 4096
MAX_SEGMENTS = 64
# Descriptors kept back from connections for everything else a worker opens.
FILES_RESERVED = 64
# Answers with a length up to this size (the page, the logo) are handed to granian whole,
# which writes them from its own I/O: a slow reader holds at most this much, never a thread.
# Bigger ones (a big file in static/) are pulled, STREAM_CHUNK at a time and at the reader's
# pace, by a thread of their own, never one of the THREADS: a slow reader holds that thread
# and a few chunks (granian queues 4), never the whole file.
ONE_PIECE = 64 * 1024
STREAM_CHUNK = 16 * 1024
# After a 408 whose body read is still pending, how long the cut-short answer waits before it
# ends, so that hyper sends what it has before it drops the connection (Guard.cut_off).
CUT_OFF_GRACE = 0.05

# The environ key where the guard notes which handler answered (metrics.route_of).
ROUTE = 'landing.route'

# On every answer, errors included; nothing here names a version.
RESPONSE_HEADERS = (
    ('Server', 'Landing'),
    ('X-Content-Type-Options', 'nosniff'),
    ('Content-Security-Policy',
     "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    ('Referrer-Policy', 'strict-origin-when-cross-origin'),
)
_OWN_HEADERS = {name.lower() for name, _ in RESPONSE_HEADERS}


class ConfigError(ValueError):
    """An environment variable holds a value the server cannot run with."""


def _whole_number(environ, name, low, high):
    """Read environment variable `name` as ASCII digits making a number in [low, high]."""
    raw = environ[name]
    # int() also takes '+8080', '3_4829', ' 80 ' and Arabic-Indic digits: none is a port.
    if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
        raise ConfigError(f'{name} must be a whole number from {low} to {high}, got {raw!r}')
    return int(raw)


def settings_from(environ, seed=None):
    """Return the settings: DEFAULTS, then the seed's config (landing.py), then the environment."""
    settings = dict(DEFAULTS)
    settings.update(cherrypy.config if seed is None else seed)
    if 'LOG_FORMAT' in environ:
        value = environ['LOG_FORMAT']
        if value not in LOG_FORMATS:
            raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
        settings['server.log_format'] = value
    for name, key in ADDRESS_VARIABLES.items():
        if name in environ:
            host = environ[name].strip()
            if not host or not host.isascii() or any(c.isspace() for c in host):
                raise ConfigError(f'{name} must be an address to bind, got {environ[name]!r}')
            settings[key] = host
    for name, (key, low, high) in WHOLE_NUMBER_VARIABLES.items():
        if name in environ:
            settings[key] = _whole_number(environ, name, low, high)
    if settings['server.metrics_port'] == settings.get('server.socket_port'):
        raise ConfigError(f"METRICS_PORT must differ from PORT ({settings['server.socket_port']})")
    return settings


# Options every tool takes besides its callable's own arguments (CherryPy's Tool._setup).
TOOL_OPTIONS = frozenset({'on', 'priority'})
_SECTION_LINE = re.compile(r'\s*\[(?P<section>[^\]]*)\]')
_OPTION_LINE = re.compile(r'(?P<option>[^\s=:#;\[][^=:]*?)\s*[=:]')


def _option_lines(text):
    """Map (section, option) to the line number where prod.conf sets it."""
    lines, section = {}, None
    for number, line in enumerate(text.splitlines(), 1):
        found = _SECTION_LINE.match(line)
        if found:
            section = found['section']
        elif not line[:1].isspace() and (found := _OPTION_LINE.match(line)):
            lines.setdefault((section, found['option']), number)
    return lines


def _tool_option_problem(key):
    """Return why `key` (tools.NAME.OPTION) names no tool option CherryPy has, or None."""
    _, _, rest = key.partition('.')
    name, _, option = rest.partition('.')
    tool = getattr(cherrypy.tools, name, None)
    if not isinstance(tool, cherrypy.Tool):
        return f'{key}: there is no tool {name!r}'
    if not option or '.' in option:
        return f'{key}: a tool option is tools.{name}.OPTION'
    if option in TOOL_OPTIONS:
        return None
    parameters = inspect.signature(tool.callable).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    accepted = {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL}
    if option in accepted:
        return None
    known = ', '.join(sorted(TOOL_OPTIONS | accepted))
    return f'{key}: tools.{name} has no option {option!r} (it takes {known})'


def check_app_config(path):
    """Raise ConfigError naming the file, line and option of the first mistake in `path`.

    CherryPy reads prod.conf with a traceback for a bad value, names the wrong line for a
    missing `]`, and takes a misspelled tool option silently (every request it applies to
    then answers 500): this finds all three at start-up, each as one line.
    """
    name = os.path.basename(path)
    with open(path, encoding='utf-8') as config_file:
        text = config_file.read()
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith('[') and not _SECTION_LINE.fullmatch(line.rstrip()):
            raise ConfigError(f'{name} line {number}: {line.strip()!r} lacks its closing ]')
    parser = reprconf.Parser()
    try:
        parser.read_string(text, name)
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(f'{name} line {error.lineno}: {error.line.strip()!r} comes before '
                          'any [section]') from None
    except configparser.ParsingError as error:
        number = error.errors[0][0]
        line = text.splitlines()[number - 1].strip()
        raise ConfigError(f'{name} line {number}: {line!r} is neither a [section] '
                          'nor an option = value') from None
    except configparser.Error as error:  # a section or option given twice
        reason = re.sub(r'^While reading from .*?\]: ', '', str(error))
        raise ConfigError(f'{name} line {error.lineno}: {reason}') from None
    lines = _option_lines(text)
    for section in parser.sections():
        for option in parser.options(section):
            where = f'{name} line {lines.get((section, option), "?")}'
            try:
                reprconf.unrepr(parser.get(section, option))
            except Exception as error:  # unrepr raises whatever evaluating the value raises
                raise ConfigError(f'{where}: {option}: not a Python value '
                                  f'({type(error).__name__}: {error})') from None
            problem = option.startswith('tools.') and _tool_option_problem(option)
            if problem:
                raise ConfigError(f'{where}: {problem}')


def error_page(status, message, traceback, version):
    """Render an error as a short page with its message, naming neither tracebacks nor versions.

    The message is what the app gave HTTPError (`HTTPError(403, 'You must log in first')`),
    or CherryPy's own for the status. CherryPy escapes every argument before the call.
    """
    if tracebacks_on():
        # Tracebacks on (any environment but production: development, CherryPy's own suite):
        # CherryPy's page, with the traceback a developer is there for.
        return cherrypy._cperror._HTTPErrorTemplate % {
            'status': status, 'message': message, 'traceback': traceback, 'version': version}
    # CherryPy leaves a callable's page as bare text/html: the callable names the charset.
    cherrypy.serving.response.headers['Content-Type'] = 'text/html; charset=utf-8'
    page = f'<!DOCTYPE html>\n<title>{status}</title>\n<h1>{status}</h1>\n'
    if message:
        page += f'<p>{message}</p>\n'
    return page


# ------------------------------------------------------------------ query strings


def _accepted_params(callable_):
    """Return the names `callable_` takes as keywords, or None if it takes any (**kwargs)."""
    try:
        parameters = inspect.signature(callable_).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in parameters if p.kind in named)


_accepted_params_cached = functools.lru_cache(maxsize=1024)(_accepted_params)


def ignore_unused_params():
    """Drop query parameters the handler does not take (utm_*, fbclid, gclid...).

    CherryPy passes every query parameter to the handler as a keyword and answers 404 when
    the handler does not take it: every ad or social link would land on a 404. Only the
    query's: a body field the handler does not take still gets CherryPy's 400. A handler a
    tool has wrapped (its own function in place of the dispatcher's) keeps every parameter:
    what the wrapper passes on is the tool's business.
    """
    request = cherrypy.serving.request
    if not request.params or not isinstance(request.handler, cherrypy.dispatch.PageHandler):
        return
    # The page handler is new each request; the callable it wraps (a bound method) is not.
    callable_ = request.handler.callable
    try:
        accepted = _accepted_params_cached(callable_)
    except TypeError:  # an unhashable callable: look it up each time
        accepted = _accepted_params(callable_)
    if accepted is not None:
        body = getattr(request.body, 'params', None) or {}
        for name in [name for name in request.params
                     if name not in accepted and name not in body]:
            del request.params[name]


# ------------------------------------------------------------------ str answers


class Utf8Handler:
    """A page handler wrapped so that what it returns as str is sent as UTF-8 bytes.

    CherryPy's own encode tool does this with charset negotiation on every request: a sixth
    of the page's CPU here. Handlers return str or bytes (or iterables of either); a text
    answer without a charset gets `; charset=utf-8`. Like the encode tool, the wrapped
    handler stays reachable as `oldhandler`.
    """

    def __init__(self, oldhandler):
        self.oldhandler = oldhandler

    def __call__(self, *args, **kwargs):
        """Call the page handler; encode a str answer, or each str chunk it yields."""
        body = self.oldhandler(*args, **kwargs)
        if isinstance(body, bytes):
            return body
        headers = cherrypy.serving.response.headers
        content_type = dict.get(headers, 'Content-Type', '')
        if 'charset' not in content_type and content_type.startswith(('text/', 'application/')):
            headers['Content-Type'] = f'{content_type}; charset=utf-8'
        if body is None:
            return body
        # Encoded, the length differs from the handler's count of characters: CherryPy's
        # encode tool drops a handler's Content-Length too, and finalize() counts the bytes.
        headers.pop('Content-Length', None)
        if isinstance(body, str):
            return body.encode('utf-8')
        return (chunk.encode('utf-8') if isinstance(chunk, str) else chunk for chunk in body)


def prepare_handler():
    """Drop unused query parameters, then wrap the handler in a Utf8Handler (tools.handler).

    One tool for both: each tool costs its setup on every request.
    """
    request = cherrypy.serving.request
    if request.handler is not None:
        ignore_unused_params()
        request.handler = Utf8Handler(request.handler)


cherrypy.tools.handler = cherrypy.Tool('before_handler', prepare_handler, priority=90)


# ------------------------------------------------------------------ the access log

# Atoms CherryPy's access log would escape: quotes, backslashes, anything unprintable.
_NEEDS_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]').search
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


def _escape(value):
    """Escape one access-log atom as CherryPy does, but only when it needs it."""
    if not _NEEDS_ESCAPE(value):
        return value
    return repr(value.replace('"', '\\"').encode('utf8'))[2:-1].replace('\\\\', '\\')


# CherryPy's own access-log format, as it ships (a test or an app may set another on the class).
STOCK_ACCESS_FORMAT = LogManager.access_log_format


class AccessLog(LogManager):
    """CherryPy's log manager, writing the same Combined Log line for a fraction of the work.

    The stock access() builds 12 atoms per request (a uuid4 and an RFC 3339 time among them
    that the format never prints) and escapes each: a fifth of a request's CPU. Requests whose
    config says `request.access_log = False` (the health check) are not logged at all. With
    LOG_FORMAT=json each line is one JSON object instead, for log collectors.
    """

    _stamp = (None, '')
    json = False

    def access(self):
        """Log the current request (Combined Log Format or JSON), unless it opted out."""
        request = cherrypy.serving.request
        if not getattr(request, 'access_log', True):
            return None
        if self.json:
            return self.access_json(request, cherrypy.serving.response)
        if self.access_log_format != STOCK_ACCESS_FORMAT:
            return super().access()  # a custom format: CherryPy's general formatter
        response = cherrypy.serving.response
        status = response.output_status
        status = status.split(b' ', 1)[0].decode('ISO-8859-1') if status else '-'
        headers = request.headers
        try:
            self.access_log.log(logging.INFO, '{} - {} {} "{}" {} {} "{}" "{}"'.format(
                _escape(request.remote.name or request.remote.ip),
                _escape(getattr(request, 'login', None) or '-'), self.time(),
                _escape(request.request_line), status,
                _escape(str(dict.get(response.headers, 'Content-Length', '') or '-')),
                _escape(dict.get(headers, 'Referer', '')),
                _escape(dict.get(headers, 'User-Agent', ''))))
        except Exception:
            self(traceback=True)  # as CherryPy's own access(): an error line, not a failed request

    def access_json(self, request, response):
        """Log the current request as one JSON object (LOG_FORMAT=json)."""
        status = response.output_status
        headers = request.headers
        length = dict.get(response.headers, 'Content-Length')
        try:
            self.access_log.log(logging.INFO, json.dumps({
                'time': datetime.datetime.fromtimestamp(response.time).astimezone().isoformat(
                    timespec='milliseconds'),
                'remote_addr': request.remote.ip,
                'method': request.method,
                'path': request.path_info,
                'query': request.query_string,
                'protocol': 'HTTP/{}.{}'.format(*request.protocol),
                'status': int(status.split(b' ', 1)[0]) if status else None,
                'bytes': int(length) if str(length).isdigit() else None,
                'duration_ms': round((time.time() - response.time) * 1000, 3),
                'user_agent': dict.get(headers, 'User-Agent', ''),
                'referer': dict.get(headers, 'Referer', ''),
            }, ensure_ascii=False))
        except Exception:
            self(traceback=True)

    def time(self):
        """Return CherryPy's [dd/Mon/yyyy:hh:mm:ss] local time, formatted once a second."""
        second = int(time.time())
        if AccessLog._stamp[0] != second:
            moment = datetime.datetime.fromtimestamp(second)
            AccessLog._stamp = (second, (
                f'[{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year:04d}:'
                f'{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}]'))
        return AccessLog._stamp[1]


# ------------------------------------------------------------------ the guard

# RFC 3986 host (reg-name, IPv4 or a bracketed IPv6) and an optional port.
_VALID_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")
# One byte range; a suffix of zero bytes (bytes=-0) is unsatisfiable, so it is ignored too.
_RANGE = re.compile(r'bytes=(?:[0-9]{1,18}-[0-9]{0,18}|-0*[1-9][0-9]{0,17})')
# The longest Host that can name a host: a DNS name (253) or an IPv6 literal, and a port.
MAX_HOST = 262
# Headers CherryPy splits into elements (httputil.header_elements) with regexes whose cost
# grows with the square of the value: 16 KB of `,"` cost a second of CPU. Content-Type is
# split on every request, GET included; Accept by the health check. Longer ones get 431.
ELEMENT_HEADERS = frozenset({
    'CONTENT_TYPE', 'HTTP_CONTENT_TYPE', 'HTTP_CONTENT_DISPOSITION', 'HTTP_TE',
    'HTTP_IF_MATCH', 'HTTP_IF_NONE_MATCH'})
MAX_ELEMENT_HEADER = 1024
# Python's cookie parser unquotes backslashes in quadratic time on Python < 3.11.10
# (CVE-2024-7592): 15,000 cost 0.47 s. No browser sends more than a few.
MAX_COOKIE_BACKSLASHES = 64
# CherryPy decodes RFC 2047 encoded words (=?charset?q?...?=) in every header value while it
# reads them, before the app's config applies; an undecodable one raised a 500. RFC 9110 has
# no use for them: a few are decoded as CherryPy does, more (or broken ones) get 400.
MAX_ENCODED_WORDS = 8
# CherryPy parses a multipart part for ~0.15 ms of CPU: 950 tiny parts in a 64 KiB body cost
# 0.14 s. A body of more parts gets 413 before CherryPy parses it.
MAX_PARTS = 100
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)', re.IGNORECASE)
# The status the guard answers when the app fails, whatever it raised.
SERVER_ERROR = '500 Internal Server Error'


def _valid_date(value):
    """Tell whether an HTTP date header holds a date (RFC 9110 §13.1.3: ignore one that doesn't)."""
    try:
        return email.utils.parsedate_to_datetime(value) is not None
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def decodable(value):
    """Tell whether CherryPy can read header `value` cheaply: few encoded words, all valid."""
    if '=?' not in value:
        return True
    if value.count('=?') > MAX_ENCODED_WORDS:
        return False
    try:
        httputil.decode_TEXT(value.strip())
    except Exception:  # noqa: BLE001  (unknown charsets, bad base64, mixed atoms: all of them)
        return False
    return True


# Header names already logged as arriving empty, once each per worker.
_blanked = set()


def note_blanked(key):
    """Log, once per header name, that a header arrived empty (granian blanks non-ASCII ones).

    granian passes a header value with any byte outside ASCII as '' (its issue #335): one
    UTF-8 cookie empties the whole Cookie header. The value is gone before Python sees it;
    the log line at least names what was lost.
    """
    if key not in _blanked and len(_blanked) < 64:
        _blanked.add(key)
        name = key.removeprefix('HTTP_').replace('_', '-').title()
        cherrypy.log(f'a {name} header arrived empty: granian passes a value with a byte '
                     'outside ASCII as empty (granian issue #335; docs/cherrypy.md)', 'GUARD',
                     severity=logging.WARNING)


def header_refusal(environ):
    """Return (status, reason) for a header CherryPy would read slowly or fail on, else None."""
    for key, value in environ.items():
        if not key.startswith(('HTTP_', 'CONTENT_')):
            continue
        if not value:
            note_blanked(key)
            continue
        if (key in ELEMENT_HEADERS or key.startswith('HTTP_ACCEPT')) and \
                len(value) > MAX_ELEMENT_HEADER:
            return '431 Request Header Fields Too Large', key
        if key == 'HTTP_COOKIE' and value.count('\\') > MAX_COOKIE_BACKSLASHES:
            return '431 Request Header Fields Too Large', key
        if not decodable(value):
            return '400 Bad Request', key
    return None


def refusal(environ, max_body=DEFAULTS['server.max_request_body_size']):
    """Return (status, reason) for a request the app must not see, or None to pass it on."""
    host = environ.get('HTTP_HOST', '')
    # Two Host fields arrive joined by a comma, which the pattern refuses. HTTP/1.1 needs one.
    if (len(host) > MAX_HOST or not _VALID_HOST.fullmatch(host) if host
            else environ['SERVER_PROTOCOL'] != 'HTTP/1'):
        return '400 Bad Request', 'invalid Host'
    path = environ.get('PATH_INFO', '')
    target = len(path) + len(environ.get('QUERY_STRING', ''))
    if target > MAX_TARGET or path.count('/') > MAX_SEGMENTS:
        return '414 URI Too Long', 'request target'
    # A declared length over the cap is refused before anything reads it; a chunked body
    # over it gets 413 from CherryPy as it is read (request.body.maxbytes).
    length = environ.get('CONTENT_LENGTH', '')
    if max_body is not None and length.isdigit() and int(length) > max_body:
        return '413 Content Too Large', 'body'
    return header_refusal(environ)


def tidy(environ):
    """Mend what granian passes and CherryPy misreads, and drop validators that would amplify."""
    if environ['SERVER_PROTOCOL'] == 'HTTP/1':
        environ['SERVER_PROTOCOL'] = 'HTTP/1.0'  # granian's name for 1.0; CherryPy needs x.y
    # One range at most (RFC 9110 §14.2 lets a server ignore Range): CherryPy builds every
    # part of a multi-range answer in memory, and 5,000 ranges made a 63 MB answer.
    if 'HTTP_RANGE' in environ and not _RANGE.fullmatch(environ['HTTP_RANGE']):
        del environ['HTTP_RANGE']
    for name in ('HTTP_IF_MODIFIED_SINCE', 'HTTP_IF_UNMODIFIED_SINCE'):
        if name in environ and not _valid_date(environ[name]):
            del environ[name]


class GuardedRequest(cherrypy._cprequest.Request):
    """CherryPy's request with the production error settings from the start.

    CherryPy reads headers (RFC 2047 words, cookies) before the app's config applies, and the
    class defaults then show tracebacks on its own version-naming page. Its hooks (below) keep
    static files to their folder and bodies unread where nothing takes one.
    """

    show_tracebacks = False
    error_page = {'default': error_page}

    def process_query_string(self):
        """Parse the query as CherryPy does; bytes invalid in its encoding become U+FFFD.

        CherryPy answers 404 to a query that does not decode (/?a=%FF, from a mangled ad
        link): the parameters are kept instead, each decoded in the app's
        `request.query_string_encoding`, split before decoding (so %26, %3D, %2B stay data).
        """
        try:
            super().process_query_string()
        except cherrypy.HTTPError:
            pairs = urllib.parse.parse_qsl(self.query_string, keep_blank_values=True,
                                           encoding=self.query_string_encoding,
                                           errors='replace')
            for name, value in pairs:
                if name in self.params:
                    previous = self.params[name]
                    self.params[name] = [*previous, value] if isinstance(previous, list) \
                        else [previous, value]
                else:
                    self.params[name] = value


class BodyTimeout(Exception):
    """The client did not send the whole request body within the deadline."""


class DeadlineInput:
    """wsgi.input read whole, at most `limit` bytes, within `timeout` s, on first use.

    granian's body reads block the calling thread until the client sends. The read runs in a
    thread of its own so the worker thread waits at most `timeout` seconds; a client still
    sending then gets 408 and a close (Guard.cut_off), which also ends the reading thread.
    `pending` tells whether a read is still waiting for the client. Nothing reads until the
    app asks: paths that take no body never wait for one.
    """

    def __init__(self, raw, limit, timeout, content_type='', waiting=None):
        self.raw, self.limit, self.timeout = raw, limit, timeout
        self.content_type = content_type
        self.waiting = waiting
        self.buffer = None
        self.pending = False

    def _load(self):
        """Read the whole body (up to limit + 1 bytes) within the timeout, or raise."""
        if self.buffer is not None:
            return self.buffer
        # Threads waiting for bodies at once are capped (Guard): slow uploads to a handler
        # never take the whole pool for BODY_TIMEOUT; one past the cap gets 503 at once.
        if self.waiting is not None and not self.waiting.acquire(blocking=False):
            raise cherrypy.HTTPError(503, 'Too many uploads are arriving at once.')
        try:
            return self._read_within_timeout()
        finally:
            if self.waiting is not None:
                self.waiting.release()

    def _read_within_timeout(self):
        """Read the body in a thread of its own; wait for it at most `timeout` s."""
        chunks, done = [], threading.Event()

        def read():
            # A reset connection ends the body: what came is what the handler gets.
            with contextlib.suppress(Exception):
                left = sys.maxsize if self.limit is None else self.limit + 1
                while left > 0 and not done.is_set():
                    chunk = self.raw.read(min(left, 65536))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left -= len(chunk)
            self.pending = False
            done.set()

        self.pending = True
        threading.Thread(target=read, name='body-reader', daemon=True).start()
        if not done.wait(self.timeout):
            done.set()  # the reader stops after the read in progress
            raise cherrypy.HTTPError(408, 'The request body did not arrive in time.')
        body = b''.join(chunks)
        if too_many_parts(self.content_type, body):
            raise cherrypy.HTTPError(413, 'The request body has too many parts.')
        self.buffer = io.BytesIO(body)
        return self.buffer

    def read(self, size=-1):
        """Read up to `size` bytes of the body (all with -1 or None)."""
        return self._load().read(-1 if size is None else size)

    def readline(self, size=-1):
        """Read one line of the body."""
        return self._load().readline(size)

    def readlines(self, hint=-1):
        """Read the body's lines."""
        return self._load().readlines(hint)

    def __iter__(self):
        """Iterate over the body's lines."""
        return iter(self._load())


def too_many_parts(content_type, body):
    """Tell whether `body` is multipart with more than MAX_PARTS parts."""
    found = _BOUNDARY.search(content_type) if content_type.lower().startswith('multipart/') \
        else None
    return bool(found) and body.count(b'--' + found.group(1).encode('latin-1')) > MAX_PARTS + 1


def takes_body():
    """Tell CherryPy not to read a request body where nothing can take one.

    Run before the body is read (`before_request_body`), once dispatch knows the handler: with
    no handler (a 404) or a static file the body is never read, so a slow uploader to them
    holds no thread. A handler's own body is read within BODY_TIMEOUT (DeadlineInput).
    """
    request = cherrypy.serving.request
    tools = request.toolmaps.get('tools', {})
    handler = request.handler
    if (handler is None or isinstance(handler, cherrypy.NotFound)
            or any(tools.get(name, {}).get('on') for name in ('staticdir', 'staticfile'))):
        request.process_request_body = False


def static_allowed(folder, branch):
    """Tell whether `branch` under `folder` names no dot entry and stays inside it for real."""
    if any(part.startswith('.') for part in re.split(r'[\\/]', branch)):
        return False
    base = os.path.realpath(folder)
    try:
        real = os.path.realpath(os.path.join(folder, branch))
    except ValueError:  # a NUL byte
        return False
    return real == base or real.startswith(base + os.sep)


def static_only():
    """Raise 404 for a dotfile, dot-folder or symlink leaving its folder, before static tools.

    CherryPy's staticdir unquotes the path once more (`%252e` is a dot) and follows symlinks.
    """
    request = cherrypy.serving.request
    tools = request.toolmaps.get('tools', {})
    staticdir = tools.get('staticdir', {})
    if staticdir.get('on'):
        folder = os.path.join(staticdir.get('root', ''), os.path.expanduser(staticdir['dir']))
        section = staticdir.get('section', '/')
        section = '/' if section == 'global' else section.rstrip('\\/')
        branch = urllib.parse.unquote(request.path_info[len(section) + 1:].lstrip('\\/'))
        if not static_allowed(folder, branch):
            raise cherrypy.NotFound()
    staticfile = tools.get('staticfile', {})
    if staticfile.get('on'):
        filename = os.path.join(staticfile.get('root') or '', staticfile['filename'])
        folder, name = os.path.split(filename)
        if not static_allowed(folder, name):
            raise cherrypy.NotFound()


def check_request():
    """Once dispatch knows the handler, before any body is read: static paths, then the body.

    A hook of GuardedRequest's own, not a tool: a tool's setup costs every request.
    """
    static_only()
    takes_body()


# Where configure() leaves BODY_TIMEOUT for mount(); no CherryPy namespace reads it.
BODY_TIMEOUT_KEY = 'landing.body_timeout'
# Where configure() leaves how many threads may wait for bodies at once: half the pool.
BODY_WAITERS_KEY = 'landing.body_waiters'

GuardedRequest.hooks = cherrypy._cprequest.HookMap(cherrypy._cprequest.hookpoints)
GuardedRequest.hooks.attach('before_request_body', check_request, priority=10)


class Guard:
    """WSGI layer around the CherryPy app: refusals, mends, security headers, one-piece answers.

    Whatever the app raises (SystemExit and KeyboardInterrupt from a handler included) and
    whatever 500 it writes, the client gets the project's 500 page. With `metrics` (a
    metrics.RequestMetrics, set in each worker) it also counts and times every request,
    refusals included.
    """

    metrics = None

    def __init__(self, app, draining, max_body=DEFAULTS['server.max_request_body_size'],
                 body_timeout=DEFAULTS['server.body_timeout'], body_waiters=None):
        self.app = app
        self.draining = draining
        self.max_body = max_body
        self.body_timeout = body_timeout
        # At most this many threads wait for request bodies at once (None: no cap).
        self.body_waiting = (threading.BoundedSemaphore(body_waiters) if body_waiters
                             else None)

    def headers(self, headers):
        """Return `headers` with RESPONSE_HEADERS in place, and Connection: close when draining."""
        headers = [(name, value) for name, value in headers
                   if name.lower() not in _OWN_HEADERS]
        headers.extend(RESPONSE_HEADERS)
        if self.draining.value:
            headers.append(('Connection', 'close'))
        return headers

    def __call__(self, environ, start_response):
        """Answer one request, counted and timed when metrics are on."""
        if self.metrics is None:
            return self.answer(environ, start_response)
        started = self.metrics.started()
        statuses = []

        def start(status, headers, exc_info=None):
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.answer(environ, start)
        finally:
            status = int(statuses[-1][:3]) if statuses else 500
            self.metrics.finished(started, environ.get('REQUEST_METHOD', ''),
                                  environ.get(ROUTE, 'error'), status)

    def page(self, start_response, status, close=True, exc_info=None):
        """Answer with the project's page for `status`; return the body."""
        body = error_page(status, '', '', '').encode()
        headers = [('Content-Type', 'text/html; charset=utf-8'),
                   ('Content-Length', str(len(body)))]
        if close:
            headers.append(('Connection', 'close'))
        if exc_info:
            start_response(status, self.headers(headers), exc_info)
        else:
            start_response(status, self.headers(headers))
        return [body]

    def answer(self, environ, start_response):
        """Refuse the request, or mend it and pass it to the app; return the body."""
        refused = refusal(environ, self.max_body)
        if refused:
            environ[ROUTE] = 'refused'
            return self.page(start_response, refused[0])
        tidy(environ)
        body = environ['wsgi.input'] = DeadlineInput(
            environ['wsgi.input'], self.max_body, self.body_timeout,
            environ.get('CONTENT_TYPE', ''), self.body_waiting)
        held = []

        def start(status, headers, exc_info=None):
            if held and held[-1] is None:  # the answer is on its way: straight through
                if exc_info is not None:
                    # PEP 3333: the body failed after its start went out. Raised, granian
                    # ends the answer (a short one with Content-Length, a chunked one cleanly:
                    # docs/cherrypy.md) instead of sending CherryPy's error text as body.
                    raise exc_info[1].with_traceback(exc_info[2])
                return start_response(status, self.headers(headers), exc_info)
            held.append((status, headers, exc_info))
            return None

        try:
            answer = self.app(environ, start)
        except BaseException:  # noqa: BLE001  (SystemExit, KeyboardInterrupt from a handler)
            cherrypy.log('the app raised', 'GUARD', severity=logging.ERROR, traceback=True)
            return self.page(start_response, SERVER_ERROR, exc_info=sys.exc_info())
        if self.metrics is not None:
            # Which handler answered: CherryPy forgets once the answer closes.
            environ[ROUTE] = metrics.route_of(cherrypy.serving.request)
        if body.pending:
            if hasattr(answer, 'close'):
                answer.close()
            return self.cut_off(start_response)
        return self.forward(answer, held, start_response, environ.get('REQUEST_METHOD'))

    def cut_off(self, start_response):
        """Answer 408 to a request whose body read is still pending, and drop the connection.

        granian 2.8.7 takes the read's lock once the app returns, holding the GIL: while the
        client sends nothing, the whole worker would stop. An answer that ends short of its
        Content-Length makes hyper drop the connection, which ends the read at once.
        """
        status = '408 Request Timeout'
        page = error_page(status, '', '', '').encode()
        start_response(status, self.headers([
            ('Content-Type', 'text/html; charset=utf-8'),
            ('Content-Length', str(len(page) + 1)), ('Connection', 'close')]))
        return _cut_short(page)

    def forward(self, answer, held, start_response, method='GET'):
        """Send the app's answer on: a 500 as the project's page, small ones in one piece."""
        if not held:
            held.append(None)
            return answer
        status, headers, exc_info = held[-1]
        if status.startswith('408') or status.startswith('500') and not tracebacks_on():
            # Whatever wrote it (CherryPy's bare error path included), the page is ours;
            # after a 408 the rest of the body is not read: the connection closes.
            if hasattr(answer, 'close'):
                answer.close()
            return self.page(start_response, status, close=status.startswith('408'))
        length = next((v for n, v in headers if n.lower() == 'content-length'), None)
        if length is None or not length.isdigit() or cherrypy.serving.response.stream:
            # A handler's own stream: its code runs in this thread.
            return self.stream(answer, held, start_response)
        if int(length) > ONE_PIECE:
            # A big answer (a file, read as it goes) is pulled by a thread of its own
            # (Streamed); once its start is out, a failure in it is raised (start, above).
            held.append(None)
            start_response(status, self.headers(headers), exc_info)
            try:
                return Streamed(answer)
            finally:
                if hasattr(answer, 'close'):
                    answer.close()  # CherryPy's request ends in this thread; a file stays open
        # granian writes a list in one piece from its own I/O thread; an iterator is pulled
        # by this worker thread, which then waits on a slow reader.
        started = len(held)
        try:
            body = b''.join(answer)
        finally:
            if hasattr(answer, 'close'):
                answer.close()
        if len(held) > started:  # the body failed: CherryPy started again, with exc_info
            return self.page(start_response, SERVER_ERROR)
        if len(body) != int(length) and method != 'HEAD':
            # A Content-Length that is wrong would frame the connection wrong: the next answer
            # on it would start inside this one. cheroot answers 500 as well.
            cherrypy.log(f'the answer declares Content-Length {length} for {len(body)} bytes',
                         'GUARD', severity=logging.ERROR)
            return self.page(start_response, SERVER_ERROR)
        start_response(status, self.headers(headers), exc_info)
        return [body]

    def stream(self, answer, held, start_response):
        """Send a streamed answer, its start once the first chunk is made (else a 500 page)."""
        status, headers, exc_info = held[-1]
        started = len(held)
        chunks = iter(answer)
        try:
            first = next(chunks, b'')
        except Exception:  # noqa: BLE001  (an app's iterator that raises)
            cherrypy.log('the answer failed before its first byte', 'GUARD',
                         severity=logging.ERROR, traceback=True)
            first = None
        if first is None or len(held) > started:
            if hasattr(answer, 'close'):
                answer.close()
            return self.page(start_response, SERVER_ERROR)
        held.append(None)
        start_response(status, self.headers(headers), exc_info)
        return _resumed(first, chunks, answer)


def tracebacks_on():
    """Tell whether tracebacks are on, for the app and the request answered (not production).

    The global setting too: a request CherryPy could not even build is a placeholder whose
    class default shows them.
    """
    return bool(cherrypy.config.get('request.show_tracebacks', False)
                and cherrypy.serving.request.show_tracebacks)


def _resumed(first, chunks, answer):
    """Yield `first`, then the rest of `chunks`; close `answer` at the end, or when closed."""
    try:
        yield first
        yield from chunks
    finally:
        if hasattr(answer, 'close'):
            answer.close()


def _cut_short(page):
    """Yield `page`, then end after CUT_OFF_GRACE: hyper sends it, then drops the connection."""
    yield page
    time.sleep(CUT_OFF_GRACE)


class Streamed:
    """A big answer that streaming_runner has a thread of its own pull, STREAM_CHUNK at a time.

    CherryPy's request has ended; what is left is its body iterator (a file read as it goes).
    Under another WSGI server it is an ordinary iterable.
    """

    def __init__(self, body):
        self.body = body

    def __iter__(self):
        """Yield the body in pieces of at most STREAM_CHUNK bytes."""
        for chunk in self.body:
            for start in range(0, len(chunk), STREAM_CHUNK):
                yield chunk[start:start + STREAM_CHUNK]

    def close(self):
        """Let the body go (granian calls this at the end, or when the client goes).

        Not CherryPy's close: that ran in the pool thread, where its request lives. The file
        closes once the last reference to it goes.
        """
        self.body = ()


class _Protocol:
    """granian's per-request protocol object, sending a Streamed answer from a new thread.

    granian's response_iter pulls the iterator in the calling thread, waiting whenever the
    client reads slowly; called from a thread of our own, the pool's thread is free at once.
    """

    __slots__ = ('protocol',)

    def __init__(self, protocol):
        self.protocol = protocol

    def response_bytes(self, status, headers, body):
        """Send a whole answer (granian writes it from its own I/O)."""
        self.protocol.response_bytes(status, headers, body)

    def response_iter(self, status, headers, body):
        """Send an iterated answer: a Streamed one from a thread of its own."""
        if isinstance(body.inner, Streamed):
            try:
                threading.Thread(target=self.protocol.response_iter, args=(status, headers, body),
                                 name='stream', daemon=True).start()
                return
            except RuntimeError:  # no thread to be had (a pids limit): pull it from this one
                log('no thread for a streamed answer: sending it from the pool', 'STREAM')
        self.protocol.response_iter(status, headers, body)


def streaming_runner(runner):
    """Return granian's WSGI `runner` (its callback) sending Streamed answers from own threads."""

    def run(protocol, scope):
        return runner(_Protocol(protocol), scope)

    return run


# ------------------------------------------------------------------ serving



def shared(ctype):
    """Return a `ctype` instance in memory that forked workers share with this process.

    An anonymous mapping, not a file: multiprocessing's RawValue makes one in /dev/shm, and
    a runtime that mounts /dev/shm read-only would stop the server at import.
    """
    return ctype.from_buffer(mmap.mmap(-1, ctypes.sizeof(ctype)))


# Set on SIGTERM when draining; shared with worker processes (read without a lock).
_draining = shared(ctypes.c_byte)
# Set by the supervisor when it stops: a worker forked just then can miss the signal itself
# (Python drops signals that arrive while a fork's child is being set up), never this.
_stopping = shared(ctypes.c_byte)
# Seconds between two heartbeats of a worker, and between two looks of the watchdog at them.
HEARTBEAT_EVERY = 0.1
WATCH_EVERY = 1.0
# Each worker's (PID, time of its last heartbeat), written by the worker, read by the watchdog.
_heartbeats = shared(ctypes.c_double * (2 * WHOLE_NUMBER_VARIABLES['WORKERS'][2]))
_started = threading.Event()


def status():
    """Return 'serving', 'starting' (not yet serving) or 'stopping' (draining or stopped)."""
    if _draining.value:
        return 'stopping'
    state = cherrypy.engine.state
    if state == states.STARTED:
        return 'serving'
    return 'stopping' if _started.is_set() else 'starting'


cherrypy.engine.subscribe('start', _started.set, priority=90)


def prepare_apps():
    """Give every mounted CherryPy app our access log (the loggers, and their handlers, stay).

    A WSGI app grafted on the tree (`cherrypy.tree.graft`, a VirtualHost dispatcher) has no
    CherryPy log: it is left as it is.
    """
    for app in cherrypy.tree.apps.values():
        log_manager = getattr(app, 'log', None)
        if isinstance(log_manager, LogManager) and not isinstance(log_manager, AccessLog):
            log_manager.__class__ = AccessLog


class _QuietThreadsWarning(logging.Filter):
    """Drop granian's warning that 100 threads is many: it is this template's deliberate default."""

    def filter(self, record):
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

    With `metrics` (a MetricsSettings) it also serves /metrics (metrics.py) once the workers
    are started.
    """

    app = None
    drain_seconds = 0
    metrics = None
    worker_timeout = 0

    def startup(self, spawn_target, target_loader):
        """Start as granian does; SIGQUIT stops like SIGTERM; serve /metrics, watch the workers."""
        super().startup(spawn_target, target_loader)
        signal.signal(signal.SIGQUIT, self.signal_handler_interrupt)
        if self.metrics:
            metrics.serve(self.metrics.listener, self.metrics.folder)
        if self.worker_timeout:
            threading.Thread(target=self.watch_workers, name='worker-watchdog',
                             daemon=True).start()

    def watch_workers(self):
        """Kill a worker whose heartbeats stopped WORKER_TIMEOUT s ago; granian replaces it."""
        while not self.interrupt_signal:
            time.sleep(WATCH_EVERY)
            for worker in list(self.wrks):
                pid, beat = _heartbeats[2 * worker.idx], _heartbeats[2 * worker.idx + 1]
                silent = time.monotonic() - beat
                if pid == worker.inner.pid and silent > self.worker_timeout:
                    log(f'worker-{worker.idx + 1} (PID {int(pid)}) showed no sign of life for '
                        f'{silent:.0f} s (WORKER_TIMEOUT={self.worker_timeout}): replacing it',
                        'WORKER')
                    _heartbeats[2 * worker.idx] = 0
                    os.kill(int(pid), signal.SIGKILL)

    def shutdown(self, exit_code=0):
        """Stop as granian does, then remove the metrics' multiprocess folder.

        Once asked to stop, a worker that ended first is no failure: the exit stays 0.
        """
        if self.interrupt_signal:
            self.interrupt_children.clear()
        try:
            super().shutdown(exit_code)
        finally:
            if self.metrics:
                metrics.remove_directory(self.metrics.folder)

    def load_app(self, _target):
        """Start CherryPy's engine in a worker process just forked, and return the app."""
        begin_worker(self.pid)
        if self.metrics:
            self.metrics.listener.close()  # the supervisor's, inherited by the fork
            self.app.metrics = metrics.RequestMetrics(
                self.metrics.threads, sample_every=metrics.SAMPLE_EVERY)
        start_engine()
        return traced_in_every_thread(self.app)

    def signal_handler_interrupt(self, signum=signal.SIGTERM, *args, **kwargs):
        """On SIGTERM or SIGINT: drain first when asked to, then stop; a second one stops now."""
        if self.pid != os.getpid():
            # A worker just forked still has this handler: keep the signal for granian's own.
            _worker_signals.append(signum)
            return
        if self.drain_seconds and not _draining.value:
            _draining.value = 1
            log(f'draining for {self.drain_seconds} s', 'SIGTERM')
            timer = threading.Timer(self.drain_seconds, self.stop)
            timer.daemon = True
            timer.start()
            return
        self.stop()

    def stop(self):
        """Stop the workers (they see _stopping even if a signal missed them), then exit."""
        _stopping.value = 1
        super().signal_handler_interrupt()


# prctl(2) option: the signal a process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1

# Signals a worker receives before run_worker's handlers are in place.
_worker_signals = []
# What stops the server or a worker gracefully (SIGQUIT too: Ctrl-backslash, some runtimes).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def die_with_supervisor(supervisor):
    """Have the kernel kill this worker when the supervisor dies, even by SIGKILL.

    Otherwise a worker of a killed supervisor serves on, orphaned, on the shared port. Only
    a supervisor that was itself killed leaves its workers so, and a container's PID 1 dying
    takes every process with it the same way: SIGKILL, as there. (SIGTERM was tried: a worker
    told so while granian was still starting it could wait forever for a shutdown event.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def note_early_signals():
    """Note SIGTERM until run_worker takes it over; ignore Ctrl-C and Ctrl-backslash.

    A terminal sends those to every process of its group: the supervisor stops the workers
    itself (SIGTERM, and _stopping). A worker that stopped on its own first would count as
    an unexpected exit, replaced or reported.
    """
    signal.signal(signal.SIGTERM, lambda signum, _frame: _worker_signals.append(signum))
    for signum in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)


def begin_worker(supervisor):
    """First steps of a worker process: note early stop signals, die with `supervisor`."""
    note_early_signals()
    die_with_supervisor(supervisor)


def start_engine():
    """Start CherryPy's engine in a worker (run_worker stops it when the worker ends).

    The engine runs its plugins and 'start' subscribers, without its signal handlers:
    granian's handle the worker's signals.
    """
    cherrypy.engine.start()


def heartbeat(slot, stop):
    """Note, every HEARTBEAT_EVERY seconds, that this worker (granian's worker `slot`) runs.

    Call `stop` when the supervisor is stopping: the signal it sent may have been missed.
    """
    _heartbeats[2 * slot + 1] = time.monotonic()
    _heartbeats[2 * slot] = os.getpid()
    while not _stopping.value:
        time.sleep(HEARTBEAT_EVERY)
        _heartbeats[2 * slot + 1] = time.monotonic()
    stop()


@WorkerProcess.wrap_target
def run_worker(worker_id, callback, sock, ipc, loop, runtime_mode, runtime_threads,
               runtime_blocking_threads, blocking_threads, blocking_threads_idle_timeout,
               backpressure, task_impl, http_mode, http1_settings, http2_settings, websockets,
               static_path, log_access_fmt, ssl_ctx, scope_opts, metrics_settings):
    """Serve the loaded app as granian's WSGI worker does, but stop it once, and stop clean.

    granian 2.8.7's own worker target calls its stop signal's set() on every SIGTERM or
    SIGINT, and a stop signal set before the callback that ends the worker is registered,
    or one that reaches a worker still being forked, is lost: the worker was killed 10 s
    later. Here SIGTERM sets it, once, after the callback is in place, and the supervisor's
    _stopping flag covers a signal that never arrived. When granian returns, the engine
    stops in this thread, so its 'stop' subscribers run once and quietly (left to the
    process's exit, Python 3.13 runs CherryPy's atexit check first: a RuntimeWarning, then
    the engine's stop lines twice).
    """
    stop, stopped, once = WorkerSignal(), threading.Event(), threading.Lock()
    stop.add_cb(stopped.set)  # before any set(): granian calls it once the server has stopped

    def stop_once(*_):
        if once.acquire(blocking=False):
            stop.set()

    signal.signal(signal.SIGTERM, stop_once)
    if signal.SIGTERM in _worker_signals or _stopping.value:
        stop_once()
    threading.Thread(target=heartbeat, args=(worker_id - 1, stop_once), name='heartbeat',
                     daemon=True).start()
    worker = WSGIWorker(
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
# included) reached the app, and HTTP_PROXY read as a `Proxy` request header.
BASE_ENVIRON = {
    'GATEWAY_INTERFACE': 'CGI/1.1', 'SCRIPT_NAME': '', 'SERVER_SOFTWARE': 'Granian',
    'wsgi.errors': sys.stderr, 'wsgi.input_terminated': True, 'wsgi.multiprocess': False,
    'wsgi.multithread': True, 'wsgi.run_once': False, 'wsgi.version': (1, 0)}


def wsgi_callback(app):
    """Return granian's WSGI callback for `app`, as granian.wsgi's, with BASE_ENVIRON only."""

    def run(proto, scope):
        start = WSGIStart()
        answer = app(BASE_ENVIRON | scope, start)
        if isinstance(answer, list):
            proto.response_bytes(start.status, start.headers, b''.join(answer))
        else:
            proto.response_iter(start.status, start.headers, ResponseIterWrap(answer))
        return start.status

    return run


def traced_in_every_thread(app):
    """Return `app`, run under the tracer `threading.settrace()` set (coverage, a debugger).

    granian calls the app from threads its Rust runtime starts, which such a tracer never
    reaches: a handler that only real requests run would look never run, and a breakpoint in
    it would never stop. With no such tracer (production) the app is returned as it is.
    """
    tracer = threading.gettrace()
    if tracer is None:
        return app

    def traced(environ, start_response):
        if sys.gettrace() is None:
            # The tracer sees the calls from here on; this line itself it cannot see.
            sys.settrace(tracer)  # pragma: no cover
        return app(environ, start_response)

    return traced


def stop_if_signalled_early(server):
    """Stop `server` as soon as it can, if SIGTERM or Ctrl-C came during start-up."""
    if _stop_early:
        server.signal_handler_interrupt()


def log(message, context='SERVER'):
    """Write one line to stderr, in CherryPy's error-log format."""
    cherrypy.log(message, context)


def connections_per_worker(settings):
    """Return how many connections a worker may hold: MAX_CONNECTIONS, within the files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Each worker keeps a few descriptors of its own (listener, pipes, logs, static files).
    spare = max(soft - FILES_RESERVED, 16) // settings['server.workers']
    return max(1, min(settings['server.max_connections'], spare))


def raise_open_files_limit():
    """Raise the soft open-files limit to the hard one: every connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def bindable_address(host, port, name='HOST'):
    """Return the IP address to listen on for `host`, or raise ConfigError naming the problem.

    granian binds with SO_REUSEPORT, so a second server on a port in use would start and
    share it silently; a plain bind first fails as it should.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ConfigError(f'{name} {host!r} is not an address this machine has: {error}') from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Connections of an earlier run still in TIME_WAIT must not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ConfigError(f'cannot listen on {host}:{port}: {error.strerror}') from None
    return address[0]


def configure(environ):
    """Apply DEFAULTS and environment overrides to CherryPy and return the settings."""
    settings = settings_from(environ)
    # CherryPy's log lines print none of these; looking them up cost a getpid() per request.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    # The server's own settings stay out of CherryPy's config: every request copies the global
    # config and walks each key (about 1 µs a key), and these are granian's, not CherryPy's.
    cherrypy.config.update({key: value for key, value in settings.items()
                            if not key.startswith('server.')})
    cherrypy.config.update({
        'error_page.default': error_page,
        # Unused query parameters dropped, str answers sent as UTF-8 (prepare_handler).
        'tools.encode.on': False,
        'tools.handler.on': True,
        # 0 is CherryPy's "no limit", which request.body.maxbytes spells None.
        'request.body.maxbytes': settings['server.max_request_body_size'] or None,
        BODY_TIMEOUT_KEY: settings['server.body_timeout'],
        BODY_WAITERS_KEY: max(1, settings['server.thread_pool'] // 2),
    })
    # granian serves the app; CherryPy's own HTTP server (cheroot) stays off.
    cherrypy.server.unsubscribe()
    cherrypy.engine.subscribe('start', prepare_apps, priority=10)
    AccessLog.json = settings['server.log_format'] == 'json'
    return settings


def mount(root, config_path):
    """Mount `root` at / with the app config in `config_path`; return the WSGI app to serve."""
    check_app_config(config_path)
    app_dir = os.path.dirname(os.path.abspath(config_path))
    # prod.conf names static files relative to the app folder, not the working directory.
    app = cherrypy.tree.mount(root, '', {'/': {
        'tools.staticdir.root': app_dir, 'tools.staticfile.root': app_dir}})
    app.merge(config_path)
    app.request_class = GuardedRequest
    # The cap and deadline configure() gave (server.* settings stay out of CherryPy's config).
    return Guard(cherrypy.tree, _draining, cherrypy.config.get(
        'request.body.maxbytes', DEFAULTS['server.max_request_body_size']),
        cherrypy.config.get(BODY_TIMEOUT_KEY, DEFAULTS['server.body_timeout']),
        cherrypy.config.get(BODY_WAITERS_KEY))


def build_server(settings, app):
    """Return a granian Server for the settings, serving the WSGI `app` in its workers."""
    server = Server(
        'landing:Landing',  # granian wants a target name; load_app() returns the app itself
        address=settings['server.bind_address'],
        port=settings['server.socket_port'],
        interface=Interfaces.WSGI,
        workers=settings['server.workers'],
        blocking_threads=settings['server.thread_pool'],
        backlog=settings['server.socket_queue_size'],
        # Connections each worker holds open at once; past it, new ones wait in the kernel's
        # backlog. Kept under the open-files limit, so the server never runs out of them.
        backpressure=connections_per_worker(settings),
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings['server.keepalive_timeout'] * 1000,
            max_buffer_size=HEADER_BUFFER),
        workers_kill_timeout=settings['server.shutdown_timeout'],
        log_dictconfig=GRANIAN_LOGGING,
        # A worker that dies (killed, out of memory, os._exit in a handler) is replaced while
        # the others serve on; one that dies again within 5.5 s of its replacement (a crash at
        # start, say) stops the server with exit 1 and "Worker crash loop detected".
        respawn_failed_workers=not settings['server.reload'],
        # RELOAD=1 (./run.sh --dev): granian restarts the workers when a file changes. A
        # worker that cannot load the edited app (a typo) ends; the next save starts anew.
        reload=settings['server.reload'],
        reload_ignore_worker_failure=True,
        reload_paths=[Path(settings['server.app_dir'])],
        reload_ignore_dirs=RELOAD_IGNORED,
        reload_tick=100,
        # granian's own exporter stays off: with it on, granian 2.8.7 starts its metrics
        # threads before forking the workers, and a worker then hung at start about one time
        # in four (measured: 1 of 4 start-ups hung with it on, 0 of 15 with it off).
        metrics_enabled=False,
    )
    server.app = app
    server.drain_seconds = settings['server.drain_seconds']
    if not settings['server.reload']:
        server.worker_timeout = settings['server.worker_timeout']
    if settings.get('server.metrics_listener'):
        server.metrics = MetricsSettings(
            settings['server.metrics_listener'], metrics.prepare_directory(),
            settings['server.thread_pool'])
    return server


def load_fresh_app(root, config_path, supervisor, _target):
    """Build the app anew in a spawned worker (RELOAD=1): the edited code, imported afresh.

    `root` names the root class as (module, name). An app that cannot load (a syntax error,
    a prod.conf mistake) is reported in one block and ends this worker with exit 1; the
    supervisor keeps watching, and the next save starts a new one.
    """
    begin_worker(supervisor)
    try:
        root_class = getattr(importlib.import_module(root[0]), root[1])
        configure(os.environ)
        app = mount(root_class(), config_path)
    except ConfigError as error:
        sys.exit(f'landing: {error}\nlanding: fix it and save: the server is still watching')
    except Exception as error:
        sys.exit(load_error(error, os.path.dirname(os.path.abspath(config_path))))
    start_engine()
    return traced_in_every_thread(app)


def load_error(error, app_dir):
    """Return `error` as one block: the app's own lines of its traceback, then what went wrong."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if frame.filename.startswith(app_dir + os.sep) and frame.filename != __file__]
    lines = traceback.format_list(frames) + traceback.format_exception_only(error)
    return ('landing: the app failed to load:\n' + ''.join(lines)
            + 'landing: fix it and save: the server is still watching')


def root_name(root):
    """Return (module, class name) of `root`, importable by a spawned worker.

    Run as a script, the app's module is __main__: its name is then the script's own.
    """
    module = type(root).__module__
    if module == '__main__':
        module = Path(sys.modules['__main__'].__file__).stem
    return module, type(root).__qualname__


def keep_main_out_of_spawned_workers():
    """Have spawned workers skip re-running the script that started the server (landing.py).

    multiprocessing runs the parent's main script again in each spawned process, before any
    code of ours: a syntax error saved there would end the worker with multiprocessing's own
    traceback. A main module whose spec is named __main__ is left alone (as for `python -m
    pkg`); load_fresh_app imports the app by name instead, and reports what fails.
    """
    main = sys.modules['__main__']
    if getattr(main, '__spec__', None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec('__main__', None)


def open_metrics_listener(settings):
    """Bind the metrics port now, before any worker starts, or raise ConfigError naming it."""
    host, port = settings['server.metrics_host'], settings['server.metrics_port']
    address = bindable_address(host, port, 'METRICS_HOST')  # names a port in use in one line
    return socket.create_server((address, port), backlog=128,
                                family=socket.AF_INET6 if ':' in address else socket.AF_INET)


def serve(root, config_path, environ=os.environ):
    """Mount `root` with `config_path` and serve it until SIGTERM or Ctrl-C; exit on bad config."""
    # Until granian installs its own, a signal during start-up is noted, then acted on.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda *_: _stop_early.append(True))
    if _stop_early:
        return  # stopped before anything started
    try:
        settings = configure(environ)
        settings['server.bind_address'] = bindable_address(
            settings['server.socket_host'], settings['server.socket_port'])
        settings['server.app_dir'] = os.path.dirname(os.path.abspath(config_path))
        app = mount(root, config_path)
        if settings['server.metrics_port'] and not settings['server.reload']:
            settings['server.metrics_listener'] = open_metrics_listener(settings)
    except ConfigError as error:
        sys.exit(f'landing: {error}')
    raise_open_files_limit()
    log(f"host={settings['server.socket_host']} port={settings['server.socket_port']} "
        f"threads={settings['server.thread_pool']} workers={settings['server.workers']}"
        + (' reload=on' if settings['server.reload'] else ''), 'SETTINGS')
    server = build_server(settings, app)
    server.on_startup(functools.partial(stop_if_signalled_early, server))
    try:
        if settings['server.reload']:
            # Spawned workers import the app's files afresh, edits included; forked ones
            # would inherit the code this process imported at start.
            multiprocessing.set_start_method('spawn', force=True)
            keep_main_out_of_spawned_workers()
            server.serve(spawn_target=run_worker, target_loader=functools.partial(
                load_fresh_app, root_name(root), config_path, os.getpid()))
        else:
            # Forked workers inherit the mounted app instead of importing it again: a faster
            # start, and memory pages shared with this process.
            multiprocessing.set_start_method('fork', force=True)
            server.serve(spawn_target=run_worker, target_loader=server.load_app)
    finally:
        ignore_stop_signals()


def ignore_stop_signals():
    """Ignore further stop signals: the server has stopped, the process is ending.

    Python puts back the default action of every signal it handled as it finalizes, and a
    second SIGTERM or Ctrl-C then would kill the process (exit -15 or -2) instead of
    letting it end with its own code.
    """
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
