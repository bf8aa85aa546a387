"""landing.py with handlers written as CherryPy documents them (tests/test_cherrypy_semantics.py).

usage: python tests/cherrypy_app.py   (same environment variables as landing.py; with
NO_BODY_CAP=1 the app sets CherryPy's `server.max_request_body_size: 0`, "no limit"; with
TRACEBACKS=1 it runs in an environment that shows tracebacks, CherryPy's test_suite)
"""
import functools
import os
import sys

import cherrypy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import landing  # noqa: E402  (needs the app folder on sys.path)


def legacy(environ, start_response):
    """A plain WSGI app, grafted on the tree beside the CherryPy app."""
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'legacy ' + environ['PATH_INFO'].encode()]


def wrapped_handler():
    """A tool that puts its own function in place of the page handler (before_handler)."""
    inner = cherrypy.serving.request.handler
    cherrypy.serving.request.handler = functools.partial(inner)


cherrypy.tools.wrapped = cherrypy.Tool('before_handler', wrapped_handler, priority=50)


# The download's chunks (64 KiB each: 64 MiB, more than loopback's buffers hold), and a
# note of each one pulled.
PULLS = 1024
PULLED: list[int] = []
# Names of the endless streams whose request has ended (Extras.endless).
ENDED: set[str] = set()


class Extras:
    """Handlers that use CherryPy as its documentation shows."""

    @cherrypy.expose
    def cafe(self):
        """Set Content-Length by hand, counting characters: one short of the UTF-8 bytes."""
        cherrypy.response.headers['Content-Length'] = str(len('café'))
        return 'café'

    @cherrypy.expose
    def forbidden(self):
        """Refuse with a message of the app's own."""
        raise cherrypy.HTTPError(403, 'You must log in first <now>')

    @cherrypy.expose
    def broken(self):
        """Fail as a bug would: CherryPy answers 500 with its message for the status."""
        raise RuntimeError('a detail for the log only')

    @cherrypy.expose
    @cherrypy.config(**{'request.show_tracebacks': False})
    def quiet(self):
        """Fail, with tracebacks turned off for this handler."""
        raise RuntimeError('a detail for the log only')

    @cherrypy.expose
    @cherrypy.config(**{'request.show_tracebacks': True})
    def loud(self):
        """Fail, with tracebacks turned on for this handler."""
        raise RuntimeError('a detail for the log only')

    @cherrypy.expose
    def unavailable(self):
        """Answer 500 with a message of the app's own."""
        raise cherrypy.HTTPError(500, 'The catalogue is <b>down</b>')

    @cherrypy.expose
    def echo(self, name=None, b=None):
        """Return the parameters as received."""
        return repr((name, b))

    @cherrypy.expose
    @cherrypy.config(**{'request.query_string_encoding': 'latin1'})
    def latin(self, name=None):
        """Return `name`, the query read as Latin-1."""
        return repr(name)

    @cherrypy.expose
    def form(self, name=None):
        """Take one body field."""
        return repr(name)

    @cherrypy.expose
    @cherrypy.tools.wrapped()
    def tooled(self, name):
        """Need `name`, behind a tool that wraps the handler."""
        return repr(name)

    @cherrypy.expose
    def environ(self):
        """Return the environ's keys and the request's Proxy header."""
        request = cherrypy.request
        return repr((sorted(request.wsgi_environ), request.headers.get('Proxy')))

    @cherrypy.expose
    def base(self):
        """Return the request's base URL as CherryPy sees it (scheme, host, port)."""
        return cherrypy.request.base

    @cherrypy.expose
    def request_id(self):
        """Return the request's ID as the app finds it, and its X-Request-ID header if any."""
        request = cherrypy.request
        return repr((request.wsgi_environ['landing.request_id'],
                     request.headers.get('X-Request-ID')))

    @cherrypy.expose
    def header(self, name):
        """Return request header `name` as CherryPy received it."""
        return repr(cherrypy.request.headers.get(name))

    @cherrypy.expose
    def cookie(self):
        """Return the Cookie header as CherryPy received it."""
        return repr(cherrypy.request.headers.get('Cookie'))

    @cherrypy.expose
    def upload(self):
        """Return the length of the body read."""
        return str(len(cherrypy.request.body.read()))

    @cherrypy.expose
    @cherrypy.config(**{'response.stream': True})
    def fails_first(self):
        """Stream an answer that fails before its first chunk."""
        raise RuntimeError('failed before the first chunk')
        yield b''  # a generator: the error comes as CherryPy pulls its first chunk

    @cherrypy.expose
    @cherrypy.config(**{'response.stream': True, 'tools.gzip.on': True})
    def fails_gzipped(self):
        """Stream a gzipped answer that fails before its own first chunk (gzip's comes first)."""
        raise RuntimeError('failed before the first chunk')
        yield b''  # a generator: the error comes as the gzip tool pulls its first chunk

    @cherrypy.expose
    @cherrypy.config(**{'response.stream': True})
    def fails_midway(self, sized=''):
        """Stream an answer that fails after its first chunk."""
        if sized:
            cherrypy.response.headers['Content-Length'] = '100'
        yield b'first chunk '
        raise RuntimeError('failed midway')

    @cherrypy.expose
    @cherrypy.config(**{'response.stream': True})
    def counted(self, text='0123456789'):
        """Stream `text` under a Content-Length of 10, the handler's own."""
        cherrypy.response.headers['Content-Length'] = 10
        return iter(text)

    @cherrypy.expose
    def typed(self):
        """Answer str JSON under the type the handler sets."""
        cherrypy.response.headers['Content-Type'] = 'application/json'
        return '{"name": "café"}'

    @cherrypy.expose
    @cherrypy.config(**{'response.stream': True})
    def endless(self, name):
        """Stream without end; note `name` as ended once the request ends (on_end_request)."""
        cherrypy.request.hooks.attach('on_end_request', lambda: ENDED.add(name))

        def chunks():
            while True:
                yield b'x' * 1024
        return chunks()

    @cherrypy.expose
    def ended(self, name):
        """Tell whether the request streaming `name` has ended."""
        return repr(name in ENDED)

    @cherrypy.expose
    def download(self):
        """Answer PULLS chunks of 64 KiB under their length, as serve_file's file; count pulls."""
        cherrypy.response.headers['Content-Type'] = 'application/octet-stream'
        cherrypy.response.headers['Content-Length'] = str(PULLS * 65536)
        PULLED.clear()

        def chunks():
            for _ in range(PULLS):
                PULLED.append(1)
                yield b'x' * 65536
        return chunks()

    @cherrypy.expose
    def pulled(self):
        """Tell how many chunks of the download have been pulled so far."""
        return str(len(PULLED))

    @cherrypy.expose
    def reason(self):
        """Answer with a reason phrase of the app's own."""
        cherrypy.response.status = '200 Everything Fine'
        return 'fine'

    @cherrypy.expose
    def default(self, *segments):
        """Return the path segments dispatch found."""
        return repr(segments)


def check_login(username, password):
    """Accept one user (session_auth's check): None, or why not."""
    return None if (username, password) == ('ann', 'secret') else 'Wrong login or password'


class Members:
    """Pages behind CherryPy's session_auth tool, which answers /do_login itself."""

    _cp_config = {'tools.sessions.on': True, 'tools.session_auth.on': True,
                  'tools.session_auth.check_username_and_password': check_login}

    @cherrypy.expose
    def index(self):
        """Greet the user logged in."""
        return f'Hi {cherrypy.request.login}'


landing.Landing.extras = Extras()
landing.Landing.members = Members()
cherrypy.tree.graft(legacy, '/legacy')
if os.environ.get('NO_BODY_CAP') == '1':
    cherrypy.config.update({'server.max_request_body_size': 0})
if os.environ.get('TRACEBACKS') == '1':
    # test_suite turns screen logging off too: the server's log stays on, as in production.
    cherrypy.config.update({'environment': 'test_suite', 'log.screen': True})

if __name__ == '__main__':
    landing.main()
