"""The guard: a WSGI layer around cherrypy.tree for refusals, security headers and answers."""
import logging
import sys

import cherrypy

from serving import metrics
from serving.bodies import DeadlineInput
from serving.refusals import refusal, tidy
from serving.request import SERVER_ERROR, error_page
from serving.settings import DEFAULTS

# Answers with a length up to this size (every static file short of it) are handed to granian
# whole, which writes them from its own I/O: a slow reader holds memory, never a thread.
# Bigger ones stream, pulled by the worker thread.
ONE_PIECE = 64 * 1024 * 1024


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


class Guard:
    """WSGI layer around the CherryPy app: refusals, mends, security headers, one-piece answers.

    Whatever the app raises (SystemExit and KeyboardInterrupt from a handler included) and
    whatever 500 it writes, the client gets the project's 500 page. With `metrics` (a
    metrics.RequestMetrics, set in each worker) it also counts and times every request,
    refusals included.
    """

    metrics = None

    def __init__(self, app, draining, max_body=DEFAULTS['server.max_request_body_size'],
                 body_timeout=DEFAULTS['server.body_timeout']):
        self.app = app
        self.draining = draining
        self.max_body = max_body
        self.body_timeout = body_timeout

    def headers(self, headers):
        """Return `headers` with RESPONSE_HEADERS in place, and Connection: close when draining."""
        headers = [(name, value.replace(';charset=', '; charset=')) if name == 'Content-Type'
                   else (name, value)
                   for name, value in headers if name.lower() not in _OWN_HEADERS]
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
        environ['wsgi.input'] = DeadlineInput(
            environ['wsgi.input'], self.max_body, self.body_timeout,
            environ.get('CONTENT_TYPE', ''))
        held = []

        def start(status, headers, exc_info=None):
            if held and held[0] is None:  # an app that starts late: straight through
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
        return self.forward(answer, held, start_response)

    def forward(self, answer, held, start_response):
        """Send the app's answer on: a 500 as the project's page, small ones in one piece."""
        if not held:
            held.append(None)
            return answer
        status, headers, exc_info = held[-1]
        if status.startswith('500') or status.startswith('408'):
            # Whatever wrote it (CherryPy's bare error path included), the page is ours;
            # after a 408 the rest of the body is not read: the connection closes.
            if hasattr(answer, 'close'):
                answer.close()
            return self.page(start_response, status, close=status.startswith('408'))
        start_response(status, self.headers(headers), exc_info)
        length = next((v for n, v in headers if n.lower() == 'content-length'), None)
        if length is None or not length.isdigit() or int(length) > ONE_PIECE:
            return answer
        # granian writes a list in one piece from its own I/O thread; an iterator is pulled
        # by this worker thread, which then waits on a slow reader.
        try:
            return [b''.join(answer)]
        finally:
            if hasattr(answer, 'close'):
                answer.close()
