"""The access log: CherryPy's Combined Log line (or LOG_FORMAT=json) for a fraction of the work."""
import atexit
import collections
import dataclasses
import datetime
import json
import logging
import os
import re
import threading
import time
from typing import Any, TextIO

import cherrypy
from cherrypy._cplogging import LogManager

from serving.request_ids import KEY, TAGGED

# Atoms CherryPy's access log would escape: quotes, backslashes, anything unprintable.
_NEEDS_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]').search


# The file an access-log record names as its source (its line is 0: not looked up).
_SOURCE = __file__


_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


def escape(value: str) -> str:
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

    _stamp: tuple[int | None, str] = (None, '')

    def __init__(self, appid: object = None, logger_root: str = 'cherrypy',
                 json: bool = False) -> None:
        super().__init__(appid, logger_root)
        self.json = json

    def access(self) -> None:
        """Log the current request (Combined Log Format or JSON), unless it opted out."""
        request = cherrypy.serving.request
        if not getattr(request, 'access_log', True):
            return None
        if self.json:
            return self.access_json(request, cherrypy.serving.response)
        if self.access_log_format != STOCK_ACCESS_FORMAT:
            super().access()  # a custom format: CherryPy's general formatter
            return None
        response = cherrypy.serving.response
        status = response.output_status
        headers = request.headers
        try:
            self.combined(request.remote.name or request.remote.ip,
                          getattr(request, 'login', None) or '-', request.request_line,
                          status.split(b' ', 1)[0].decode('ISO-8859-1') if status else '-',
                          str(dict.get(response.headers, 'Content-Length', '') or '-'),
                          dict.get(headers, 'Referer', ''), dict.get(headers, 'User-Agent', ''))
        except Exception:
            self(traceback=True)  # as CherryPy's own access(): an error line, not a failed request
        return None

    def combined(self, remote: str, login: str, request_line: str, status: str, length: str,
                 referer: str, agent: str) -> None:
        """Log one Combined Log line from its fields, escaped as CherryPy escapes them."""
        atoms: tuple[str, ...] = (remote, login, request_line, length, referer, agent)
        # One search over them all: most lines need no escaping at all.
        if _NEEDS_ESCAPE(''.join(atoms)):
            atoms = tuple(escape(atom) for atom in atoms)
        remote, login, request_line, length, referer, agent = atoms
        self.line(f'{remote} - {login} {self.time()} "{request_line}" {status} {length} '
                  f'"{referer}" "{agent}"')

    def line(self, text: str) -> None:
        """Log `text` as an access line, if the access log takes INFO lines.

        logger.handle() with a record made here: Logger.log() would look up the caller's file
        and line (a stack walk per request), which no access-log format prints.
        """
        logger = self.access_log
        if logger.isEnabledFor(logging.INFO):
            logger.handle(logger.makeRecord(logger.name, logging.INFO, _SOURCE, 0, text, (),
                                            None, 'access'))

    def access_json(self, request: Any, response: Any) -> None:
        """Log the current request as one JSON object (LOG_FORMAT=json)."""
        status = response.output_status
        headers = request.headers
        try:
            self.json_line(
                response.time, request.remote.ip, request.method, request.path_info,
                request.query_string, 'HTTP/{}.{}'.format(*request.protocol),
                int(status.split(b' ', 1)[0]) if status else None,
                str(dict.get(response.headers, 'Content-Length', '')),
                dict.get(headers, 'User-Agent', ''), dict.get(headers, 'Referer', ''),
                getattr(request, 'wsgi_environ', {}).get(KEY, ''))
        except Exception:
            self(traceback=True)

    def json_line(self, started: float, remote: str, method: str, path: str, query: str,
                  protocol: str, status: int | None, length: str, agent: str, referer: str,
                  request_id: str) -> None:
        """Log one JSON access line (LOG_FORMAT=json) for a request begun at `started`."""
        self.line(json.dumps({
            'time': datetime.datetime.fromtimestamp(started).astimezone().isoformat(
                timespec='milliseconds'),
            'remote_addr': remote,
            'method': method,
            'path': path,
            'query': query,
            'protocol': protocol,
            'status': status,
            'bytes': int(length) if length.isdigit() else None,
            'duration_ms': round((time.time() - started) * 1000, 3),
            'user_agent': agent,
            'referer': referer,
            'request_id': request_id,
        }, ensure_ascii=False))

    def time(self) -> str:
        """Return CherryPy's [dd/Mon/yyyy:hh:mm:ss] local time, formatted once a second."""
        second = int(time.time())
        if AccessLog._stamp[0] != second:
            moment = datetime.datetime.fromtimestamp(second)
            AccessLog._stamp = (second, (
                f'[{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year:04d}:'
                f'{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}]'))
        return AccessLog._stamp[1]


# How long an access-log line waits at most before it is written (BatchedStream).
FLUSH_EVERY = 0.05


class BatchedStream:
    """A text stream for the access log's screen handler: its lines go out in batches.

    A write (and the flush after it) per line cost each request a system call, and with it a
    hand-over of the GIL to the next of the pool's threads: under load, a fifth of a request's
    CPU. Lines are kept in order and written together by a thread of this process, at most
    FLUSH_EVERY seconds after the first of them came, and at once when the engine stops or the
    process exits. With no line to write the thread sleeps: a waking thread takes the GIL from
    the pool's (a steady 20 wakes a second cost a request 10 % more CPU).
    """

    def __init__(self, stream: TextIO, every: float = FLUSH_EVERY) -> None:
        self.stream = stream
        self.every = every
        self.lines: collections.deque[str] = collections.deque()  # append and popleft: atomic
        self.lock = threading.Lock()  # one writer at a time: the thread, stop or exit
        self._start()
        # A forked child writes its own lines: its parent writes the ones it had.
        os.register_at_fork(after_in_child=self._start)
        atexit.register(self.drain)

    def _start(self) -> None:
        """Start the thread that writes the lines (again, in a forked child)."""
        self.lines.clear()
        self.lock = threading.Lock()
        self.waiting = threading.Event()  # set: lines wait to be written
        threading.Thread(target=self._run, name='access-log', daemon=True).start()

    def _run(self) -> None:
        """Write each batch `every` seconds after its first line, for the life of the process."""
        while True:
            self.waiting.wait()
            # Cleared before the drain: a line that comes after it sets it again.
            self.waiting.clear()
            time.sleep(self.every)
            self.drain()

    def write(self, text: str) -> int:
        """Keep `text` for the next batch (and wake the thread for it)."""
        self.lines.append(text)
        if not self.waiting.is_set():
            self.waiting.set()
        return len(text)

    def flush(self) -> None:
        """Nothing now: the lines go out within `every` seconds (drain() sends them at once)."""

    def drain(self) -> None:
        """Write and flush every line kept so far."""
        with self.lock:
            batch = []
            while self.lines:
                batch.append(self.lines.popleft())
            if batch:
                try:
                    self.stream.write(''.join(batch))
                    self.stream.flush()
                except (OSError, ValueError):  # stdout closed or gone: nothing to tell it
                    pass


def batch_screen_output(logger: logging.Logger) -> None:
    """Give `logger`'s screen handlers (CherryPy's `log.screen`) a BatchedStream, once."""
    for handler in logger.handlers:
        if getattr(handler, '_cpbuiltin', None) == 'screen' \
                and isinstance(handler, logging.StreamHandler) \
                and not isinstance(handler.stream, BatchedStream):
            batched = BatchedStream(handler.stream)
            handler.setStream(batched)
            cherrypy.engine.subscribe('stop', batched.drain)
            cherrypy.engine.subscribe('exit', batched.drain)


@dataclasses.dataclass(frozen=True)
class AccessLogs:
    """At engine start, give every mounted CherryPy app our access log, in `json` or not.

    Its handlers stay (the loggers are CherryPy's, by name). Equal ones are one listener: the
    engine keeps its listeners in a set, so configuring twice subscribes it once.
    """

    json: bool = False

    def __call__(self) -> None:
        """Replace each app's stock log manager (a restart leaves ours as they are).

        Every error logger, the global one and each app's, also gets request_ids.TAGGED, so an
        error line names the request it comes from. A WSGI app grafted on the tree
        (`cherrypy.tree.graft`, a VirtualHost dispatcher) has no CherryPy log: it is left as
        it is.
        """
        cherrypy.log.error_log.addFilter(TAGGED)
        batch_screen_output(cherrypy.log.access_log)
        for app in cherrypy.tree.apps.values():
            log = getattr(app, 'log', None)
            if not isinstance(log, LogManager):
                continue
            if not isinstance(log, AccessLog):
                app.log = log = AccessLog(log.appid, log.logger_root, json=self.json)
            log.error_log.addFilter(TAGGED)
