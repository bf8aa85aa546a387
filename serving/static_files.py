"""prod.conf's static files answered before CherryPy: its answer, built once, from memory.

CherryPy's staticfile and staticdir tools run the whole request pipeline (headers parsed, the
dispatcher, the config merged, tools set up) for bytes that never change: nine tenths of a
logo's time. The guard asks StaticFiles first: a GET or HEAD for a file prod.conf declares is
answered here, with the answer CherryPy would give (the same headers, 304 on an unchanged
If-Modified-Since, one Range, HEAD, gzip where the guard would gzip, the access log line).
Whether a path is a static file is CherryPy's own decision (its dispatcher and merged config,
asked once per path); anything else, or anything this does not answer exactly as CherryPy
would (412, 416, If-Range, a section with other tools on), goes to CherryPy as before.
"""
import collections
import dataclasses
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from wsgiref.types import WSGIEnvironment

from cherrypy.lib import httputil

from serving.access_log import STOCK_ACCESS_FORMAT, AccessLog
from serving.compression import compressed, not_modified
from serving.request import http_date
from serving.request_ids import KEY
from serving.static_config import StaticFile, dispatched_config, read_answer, static_file_of
from serving.streaming import ONE_PIECE, STREAM_CHUNK, Streamed

# Files past ONE_PIECE are kept in memory (up to static_config.IN_MEMORY each) while together
# they hold at most HELD bytes; past that they are read as they go (streaming.py). Files up to
# ONE_PIECE are always kept: at most REMEMBERED x ONE_PIECE (16 MiB).
HELD = 16 * 1024 * 1024
# Paths remembered (a file's answer, or "not a static file"): at most this many, the least
# recently asked for going first, so random paths cannot grow the table without end.
REMEMBERED = 256
# What a path may hold to be answered here: plain ASCII path characters. Anything else
# (%-escapes CherryPy unquotes again, backslashes, NULs, `//`) goes to CherryPy's own checks.
_PLAIN = re.compile(r'(/[A-Za-z0-9_~!$&\'()*+,;=:@.-]+)+', re.ASCII).fullmatch
# What CherryPy's 304 leaves out (HTTPRedirect.set_response), lower case.
_NOT_ON_304 = frozenset({'allow', 'content-encoding', 'content-language', 'content-length',
                         'content-location', 'content-md5', 'content-range', 'content-type',
                         'expires', 'last-modified'})
# The protocols CherryPy reads as 1.0 and 1.1 (tidy() names granian's HTTP/1 as 1.0).
_PROTOCOLS = frozenset({'HTTP/1.0', 'HTTP/1.1'})

Headers = list[tuple[str, str]]
# An answer: its status, headers and body.
Answer = tuple[str, Headers, Iterable[bytes]]


class StaticFiles:
    """The static files of a CherryPy app, answered from memory before CherryPy sees them."""

    def __init__(self, app: Any, remembered: int = REMEMBERED, held: int = HELD) -> None:
        """Answer `app`'s static files; remember at most `remembered` paths, `held` bytes."""
        self.app = app
        self.remembered, self.most_held = remembered, held
        self.known: collections.OrderedDict[str, StaticFile | None] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.held = 0  # bytes of the files kept in memory
        # Sections where a static tool is on: paths elsewhere skip the lookup at once.
        self.sections = tuple(sorted(
            section.rstrip('/') for section, conf in app.config.items()
            if section.startswith('/') and (conf.get('tools.staticfile.on')
                                            or conf.get('tools.staticdir.on'))))

    def answer(self, environ: WSGIEnvironment) -> Answer | None:
        """Return the answer to `environ` if it asks for a static file, else None (CherryPy's).

        The access log has its line once this returns: the guard only starts the answer.
        """
        method = environ['REQUEST_METHOD']
        if method != 'GET' and method != 'HEAD':
            return None
        path = environ.get('PATH_INFO', '')
        if not path.startswith(self.sections) or 'HTTP_IF_RANGE' in environ \
                or environ['SERVER_PROTOCOL'] not in _PROTOCOLS \
                or environ.get('CONTENT_LENGTH') or 'HTTP_TRANSFER_ENCODING' in environ \
                or environ.get('SCRIPT_NAME'):
            return None
        started = time.time()
        found = self.find(path)
        if found is None or not logs_as_ours(self.app):
            return None
        lastmod = found.last_modified
        unmodified = environ.get('HTTP_IF_UNMODIFIED_SINCE')
        if unmodified and unmodified != lastmod:
            return None  # CherryPy's 412 page
        headers = [*found.headers, ('Date', http_date(started))]
        if environ.get('HTTP_IF_MODIFIED_SINCE') == lastmod:
            # CherryPy's 304 keeps none of the entity's headers (HTTPRedirect.set_response).
            kept = [pair for pair in headers if pair[0].lower() not in _NOT_ON_304]
            return self.sent(environ, started, '304 Not Modified',
                             not_modified(environ, kept), [], found, '-')
        body = found.body
        size = found.size
        status = '200 OK'
        start, stop = 0, size
        protocol = environ['SERVER_PROTOCOL']
        if protocol == 'HTTP/1.1':
            headers.append(('Accept-Ranges', 'bytes'))
            ranges = httputil.get_ranges(environ.get('HTTP_RANGE'), size)
            if ranges == [] or ranges and len(ranges) > 1:
                return None  # CherryPy's 416 page; several ranges (the guard keeps one)
            if ranges:
                start, stop = ranges[0][0], min(ranges[0][1], size)
                status = '206 Partial Content'
                headers.append(('Content-Range', f'bytes {start}-{stop - 1}/{size}'))
        length = str(stop - start)
        headers.append(('Content-Length', length))
        if method == 'HEAD':
            if size <= ONE_PIECE:  # as the guard's one-piece answers: its Vary
                headers, _ = compressed(environ, status, headers, b'')
            return self.sent(environ, started, status, headers, [], found, length)
        if body is None:
            # Past ONE_PIECE and not in memory: sent as CherryPy's is, read as it goes.
            # A file gone since it was found (opened() is None) is CherryPy's 404.
            file = opened(found.path)
            return None if file is None else self.sent(
                environ, started, status, headers, Streamed(chunks(file, start, stop)), found,
                length)
        if stop - start != size:
            body = body[start:stop]
        if size <= ONE_PIECE:
            # As the guard's one-piece answers: a 200 gzipped where the client takes it, a
            # 206 with its Vary only.
            headers, body = compressed(environ, status, headers, body)
        return self.sent(environ, started, status, headers, [body], found, length)

    def sent(self, environ: WSGIEnvironment, started: float, status: str, headers: Headers,
             body: Iterable[bytes], found: StaticFile, length: str) -> Answer:
        """Log the answer as CherryPy's access log would, and return it.

        `length` is the Content-Length CherryPy's log names: before gzip, '-' for a 304.
        """
        if found.logged:
            log_access(self.app, environ, status, length, started)
        return status, headers, body

    def find(self, path: str) -> StaticFile | None:
        """Return the static file `path` names, as it is now; None where CherryPy decides."""
        with self.lock:
            seen = path in self.known
            known = self.known.get(path)
            if seen:
                self.known.move_to_end(path)
        if seen and known is None:
            return None
        if known is not None:
            try:
                now = os.stat(known.path)
            except OSError:
                now = None
            if now is not None and (now.st_ino, now.st_size, now.st_mtime_ns) == known.identity:
                return known
        found = self.look_up(path) if _PLAIN(path) else None
        with self.lock:
            if found is not None and self.held + held_bytes(found) > self.most_held:
                found = dataclasses.replace(found, body=None)
            self.forget(path)
            self.known[path] = found
            self.held += held_bytes(found)
            while len(self.known) > self.remembered:
                self.forget(next(iter(self.known)))
        return found

    def forget(self, path: str) -> None:
        """Drop what is known of `path` (holding the lock), and the memory its bytes took."""
        self.held -= held_bytes(self.known.pop(path, None))

    def look_up(self, path: str) -> StaticFile | None:
        """Ask CherryPy what `path` is; return its static file's answer, or None."""
        config = dispatched_config(self.app, path)
        if config is None:
            return None
        filename = static_file_of(config, path)
        if filename is None:
            return None
        return read_answer(filename, config)


def held_bytes(known: StaticFile | None) -> int:
    """Return the bytes `known` holds against the budget: those of a file past ONE_PIECE."""
    if known is None or known.body is None or known.size <= ONE_PIECE:
        return 0
    return known.size


def opened(filename: str) -> BinaryIO | None:
    """Return `filename` open for reading, or None if it is gone."""
    try:
        return open(filename, 'rb')  # noqa: SIM115  (closed by chunks(), or its caller)
    except OSError:
        return None


def chunks(file: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
    """Yield bytes start to stop of `file`, STREAM_CHUNK at a time, then close it."""
    with file:
        file.seek(start)
        left = stop - start
        # A file cut short meanwhile ends the answer short: the client sees it incomplete.
        while left > 0 and (chunk := file.read(min(STREAM_CHUNK, left))):
            left -= len(chunk)
            yield chunk


def logs_as_ours(app: Any) -> bool:
    """Tell whether `app` logs with our AccessLog in a format log_access writes."""
    log = getattr(app, 'log', None)
    return isinstance(log, AccessLog) and (log.json or
                                           log.access_log_format == STOCK_ACCESS_FORMAT)


def log_access(app: Any, environ: WSGIEnvironment, status: str, length: str,
               started: float) -> None:
    """Write the access line CherryPy's log would write for this answer, begun at `started`."""
    log: AccessLog = app.log
    get = environ.get
    if log.json:
        log.json_line(started, get('REMOTE_ADDR', ''), environ['REQUEST_METHOD'],
                      environ['PATH_INFO'], get('QUERY_STRING', ''), environ['SERVER_PROTOCOL'],
                      int(status[:3]), length, header_text(get('HTTP_USER_AGENT', '')),
                      header_text(get('HTTP_REFERER', '')), get(KEY, ''))
        return
    log.combined(get('REMOTE_HOST') or get('REMOTE_ADDR', ''),
                 get('LOGON_USER') or get('REMOTE_USER') or '-', access_request_line(environ),
                 status[:3], length, header_text(get('HTTP_REFERER', '')),
                 header_text(get('HTTP_USER_AGENT', '')))


def access_request_line(environ: WSGIEnvironment) -> str:
    """Return the request line as CherryPy rebuilds it.

    CherryPy decodes the target's bytes as UTF-8; hyper admits only ASCII in a target (it
    answers 400 to any other byte), which UTF-8 leaves as it is.
    """
    query = environ.get('QUERY_STRING', '')
    target = f"{environ['PATH_INFO']}?{query}" if query else environ['PATH_INFO']
    return f"{environ['REQUEST_METHOD']} {target} {environ['SERVER_PROTOCOL']}"


def header_text(value: str) -> str:
    """Return a header's value as CherryPy's request.headers holds it (RFC 2047 decoded)."""
    return httputil.decode_TEXT_maybe(value) if '=?' in value else value
