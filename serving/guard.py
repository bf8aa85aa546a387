"""The guard: a WSGI layer around cherrypy.tree for refusals, security headers and answers."""
import ctypes
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, cast
from wsgiref.types import StartResponse, WSGIEnvironment

import cherrypy

from serving import metrics
from serving.bodies import MAX_BODY, DeadlineInput
from serving.compression import compressed, not_modified
from serving.connections import cut_off, keeping_alive
from serving.metrics import RequestMetrics
from serving.proxies import Proxies
from serving.redirects import host_name, relative_location
from serving.refusals import refusal, tidy
from serving.request import SERVER_ERROR, cherrypy_pages, short_page, shown_message
from serving.request_ids import HEADER, assign, current, forget
from serving.static_files import StaticFiles
from serving.streaming import ONE_PIECE, Streamed, resumed

if TYPE_CHECKING:
    from _typeshed import OptExcInfo



# The environ key where the guard notes which handler answered (metrics.route_of).
ROUTE = 'landing.route'


# The Server header of every answer: CherryPy's own names its version ("CherryPy/18.10.0").
SERVER = ('Server', 'Landing')


# The app the guard calls: a WSGI app that never calls write() (CherryPy's tree), since its
# start_response returns None while the guard holds the answer.
App = Callable[[WSGIEnvironment, Callable[..., object]], Iterable[bytes]]
# An answer's headers, and what Guard.answer holds of a start_response call (None: passed on).
Headers = list[tuple[str, str]]
Started = tuple[str, Headers, 'OptExcInfo | None']
Held = Started | None


class Guard:
    """WSGI layer around the CherryPy app: refusals, mends, security headers, one-piece answers.

    Whatever the app raises (SystemExit and KeyboardInterrupt from a handler included) and
    whatever 500 it writes, the client gets the project's 500 page. With `metrics` (a
    metrics.RequestMetrics: each worker makes its own, see counting()) it also counts and
    times every request, refusals included. With `proxies` (TRUSTED_PROXIES), a request from
    one of them gets the client's address and scheme its forwarded headers name. With
    `allowed_hosts` (ALLOWED_HOSTS), a redirect for any other Host goes out relative; with
    none, every redirect on the site does. With `static` (static_files.StaticFiles), the
    app's static files are answered before CherryPy sees the request.
    """

    def __init__(self, app: App, draining: ctypes.c_byte,
                 policy: Mapping[str, str] | None = None,
                 max_body: int | None = MAX_BODY, body_timeout: float = 10,
                 body_waiters: int | None = None,
                 metrics: RequestMetrics | None = None,
                 proxies: Proxies | None = None,
                 allowed_hosts: frozenset[str] | None = None,
                 static: StaticFiles | None = None) -> None:
        self.app = app
        self.static = static
        self.proxies = proxies
        self.allowed_hosts = allowed_hosts
        self.draining = draining
        self.metrics = metrics
        self.body_waiters = body_waiters
        # The page policy's headers (landing.py's HEADERS), as (name, value) pairs.
        self.policy = tuple((policy or {}).items())
        self.policy_names = tuple((name.lower(), (name, value)) for name, value in self.policy)
        self.max_body = max_body
        self.body_timeout = body_timeout
        # At most this many threads wait for request bodies at once (None: no cap).
        self.body_waiting = (threading.BoundedSemaphore(body_waiters) if body_waiters
                             else None)

    def counting(self, metrics: RequestMetrics) -> 'Guard':
        """Return a guard like this one that also counts into `metrics` (one per worker)."""
        return Guard(self.app, self.draining, dict(self.policy), self.max_body,
                     self.body_timeout, self.body_waiters, metrics, self.proxies,
                     self.allowed_hosts, self.static)

    def headers(self, headers: Headers) -> Headers:
        """Return `headers` with ours in place, and Connection: close when draining.

        The Server header is always ours; each policy header is added unless the answer sets
        its own (a page with a CSP of its own keeps it).
        """
        given = set()
        sent = []
        for pair in headers:  # one pass: this runs for every answer
            name = pair[0].lower()
            given.add(name)
            if name != 'server':
                sent.append(pair)
        sent.append(SERVER)
        sent.extend(pair for name, pair in self.policy_names if name not in given)
        request_id = getattr(current, 'value', None)
        if request_id:
            sent.append((HEADER, request_id))
        if self.draining.value:
            sent.append(('Connection', 'close'))
        return sent

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request, counted and timed when metrics are on."""
        if self.metrics is None:
            try:
                return self.answer(environ, start_response)
            finally:
                forget()
        started = self.metrics.started()
        statuses: list[str] = []

        def start(status: str, headers: Headers,
                  exc_info: 'OptExcInfo | None' = None) -> Callable[[bytes], object]:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.answer(environ, start)
        finally:
            forget()
            status = int(statuses[-1][:3]) if statuses else 500
            self.metrics.finished(started, environ.get('REQUEST_METHOD', ''),
                                  environ.get(ROUTE, 'error'), status)

    def page(self, start_response: StartResponse, status: str, close: bool = True,
             exc_info: 'OptExcInfo | None' = None, message: str = '') -> list[bytes]:
        """Answer with the project's page for `status` (`message`: HTML); return the body."""
        body = short_page(status, message).encode()
        headers = [('Content-Type', 'text/html; charset=utf-8'),
                   ('Content-Length', str(len(body)))]
        if close:
            headers.append(('Connection', 'close'))
        if exc_info:
            start_response(status, self.headers(headers), exc_info)
        else:
            start_response(status, self.headers(headers))
        return [body]

    def answer(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Refuse the request, or mend it and pass it to the app; return the body."""
        # Every answer names the request's ID, refusals included (headers()).
        assign(environ, self.proxies is not None and self.proxies.trusts_peer(environ))
        # 'HTTP/1' is granian's name for HTTP/1.0 (tidy() mends it for CherryPy).
        if environ.get('SERVER_PROTOCOL') == 'HTTP/1' \
                and environ.get('HTTP_CONNECTION', '').lower() == 'keep-alive':
            start_response = keeping_alive(start_response)
        refused = refusal(environ, self.max_body)
        if refused:
            environ[ROUTE] = 'refused'
            return self.page(start_response, refused[0])
        if self.proxies is not None:
            # Before CherryPy reads the environ: its request.remote, scheme and base, and so
            # the access log, see the client.
            self.proxies.mend(environ)
        tidy(environ)
        if self.static is not None:
            found = self.static.answer(environ)
            if found is not None:
                environ[ROUTE] = 'static'
                start_response(found[0], self.headers(found[1]))
                return found[2]
        body = environ['wsgi.input'] = DeadlineInput(
            environ['wsgi.input'], self.max_body, self.body_timeout,
            environ.get('CONTENT_TYPE', ''), self.body_waiting)
        held: list[Held] = []

        def start(status: str, headers: Headers,
                  exc_info: 'OptExcInfo | None' = None) -> Callable[[bytes], object] | None:
            if status[:1] == '3' and (self.allowed_hosts is None
                                      or host_name(environ) not in self.allowed_hosts):
                # CherryPy's redirects name the request's Host, which may not be the site's.
                headers = relative_location(headers, environ)
            if held and held[-1] is None:  # the answer is on its way: straight through
                if exc_info is not None and exc_info[1] is not None:
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
            return cut_off(start_response, self.headers)
        return self.forward(answer, held, start_response, environ)

    def forward(self, answer: Iterable[bytes], held: list[Held], start_response: StartResponse,
                environ: WSGIEnvironment) -> Iterable[bytes]:
        """Send the app's answer on: a 500 as the project's page, small ones in one piece.

        A small text answer goes gzipped to a client that accepts it (compression.py).
        """
        if not held:
            held.append(None)
            return answer
        # None is held only once an answer is passed on (above): this one is held.
        status, headers, exc_info = cast(Started, held[-1])
        if status.startswith('408') or status.startswith('500') and not cherrypy_pages():
            # Whatever wrote it (CherryPy's bare error path included), the page is ours, with
            # the message CherryPy's error page showed (read before close() ends the request);
            # after a 408 the rest of the body is not read: the connection closes.
            message = shown_message(status)
            if hasattr(answer, 'close'):
                answer.close()
            return self.page(start_response, status, close=status.startswith('408'),
                             message=message)
        if status.startswith('304'):
            headers = not_modified(environ, headers)
            held[-1] = (status, headers, exc_info)
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
        if len(body) != int(length) and environ.get('REQUEST_METHOD') != 'HEAD':
            # A Content-Length that is wrong would frame the connection wrong: the next answer
            # on it would start inside this one. cheroot answers 500 as well.
            cherrypy.log(f'the answer declares Content-Length {length} for {len(body)} bytes',
                         'GUARD', severity=logging.ERROR)
            return self.page(start_response, SERVER_ERROR)
        headers, body = compressed(environ, status, headers, body)
        start_response(status, self.headers(headers), exc_info)
        return [body]

    def stream(self, answer: Iterable[bytes], held: list[Held],
               start_response: StartResponse) -> Iterable[bytes]:
        """Send a streamed answer, its start once the first chunk is made (else a 500 page)."""
        status, headers, exc_info = cast(Started, held[-1])
        started = len(held)
        chunks = iter(answer)
        first: bytes | None
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
        return resumed(first, chunks, answer)
