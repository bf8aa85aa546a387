"""The app's request class: the project's error page from the start, its hooks in place."""
import time
import urllib.parse
from http.cookies import SimpleCookie

import cherrypy
from cherrypy.lib import httputil

from serving.bodies import takes_body
from serving.static import static_only


def cherrypy_pages() -> bool:
    """Tell whether error pages are CherryPy's own: the environment shows tracebacks.

    `environment: production` (the project's default), like CherryPy's staging and embedded,
    hides them: there every error page is the project's, whatever an app or handler sets.
    Elsewhere (CherryPy's own suite, a config without an environment) the page is CherryPy's,
    with a traceback where the request shows them, as CherryPy gives it.
    """
    environment = cherrypy.config.environments.get(cherrypy.config.get('environment'), {})
    return bool(environment.get('request.show_tracebacks', True))


def short_page(status: str, message: str = '') -> str:
    """Return the project's page for `status`: its message (HTML), no traceback, no version."""
    page = f'<!DOCTYPE html>\n<title>{status}</title>\n<h1>{status}</h1>\n'
    if message:
        page += f'<p>{message}</p>\n'
    return page


# The attribute of CherryPy's response where error_page notes (status, message) it showed.
SHOWN = 'landing_error_shown'


def error_page(status: str, message: str, traceback: str, version: str) -> str:
    """Render an error (CherryPy's `error_page.default`): CherryPy's page, or in production ours.

    The message is what the app gave HTTPError (`HTTPError(403, 'You must log in first')`),
    or CherryPy's own for the status. CherryPy escapes every argument before the call, and
    passes a traceback only where the request shows them. In production the page names
    neither tracebacks nor versions; the message is noted for the guard (shown_message).
    """
    response = cherrypy.serving.response
    setattr(response, SHOWN, (status, message))
    if cherrypy_pages():
        # Any environment but production (development, CherryPy's own suite): CherryPy's
        # page, with the traceback a developer is there for where the request shows it.
        return str(cherrypy._cperror._HTTPErrorTemplate % {
            'status': status, 'message': message, 'traceback': traceback, 'version': version})
    # CherryPy leaves a callable's page as bare text/html: the callable names the charset.
    response.headers['Content-Type'] = 'text/html; charset=utf-8'
    return short_page(status, message)


def shown_message(status: str) -> str:
    """Return the message error_page showed for `status` in this thread's request, else ''."""
    shown = getattr(cherrypy.serving.response, SHOWN, None)
    return shown[1] if shown is not None and shown[0][:3] == status[:3] else ''


# The status the guard answers when the app fails, whatever it raised.
SERVER_ERROR = '500 Internal Server Error'


def check_request() -> None:
    """Once dispatch knows the handler, before any body is read: static paths, then the body.

    A hook of GuardedRequest's own, not a tool: a tool's setup costs every request.
    """
    static_only()
    takes_body()


class Hooks(cherrypy._cprequest.HookMap):
    """CherryPy's HookMap, which skips the points where nothing is attached.

    A request runs eight hook points, most of them empty for a page; CherryPy sorts and walks
    each, empty or not (about 1 µs each).
    """

    def run(self, point: str) -> None:
        """Run the hooks at `point` as HookMap.run does, if there are any."""
        hooks = self[point]
        if hooks:
            self.run_hooks(iter(sorted(hooks)))


class GuardedRequest(cherrypy._cprequest.Request):
    """CherryPy's request with the production error settings from the start.

    CherryPy reads headers (RFC 2047 words, cookies) before the app's config applies, and the
    class defaults then show tracebacks on its own version-naming page. Its hooks keep static
    files to their folder and bodies unread where nothing takes one (check_request).
    """

    show_tracebacks = False
    error_page = {'default': error_page}
    hooks = Hooks(cherrypy._cprequest.hookpoints)
    hooks.attach('before_request_body', check_request, priority=10)

    def process_query_string(self) -> None:
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


class ResponseHeaders(httputil.HeaderMap):
    """CherryPy's response HeaderMap, put on the wire for a fraction of the work.

    CherryPy encodes each name and value in turn and deletes control characters from it
    (HeaderMap.encode_header_item): about 6 µs for a page's headers. A plain ASCII one with
    nothing to delete is its own encoding; any other still goes CherryPy's way.
    """

    def output(self) -> list[tuple[bytes, bytes]]:
        """Transform self into a list of (name, value) byte pairs, as HeaderMap.output()."""
        pairs = []
        for name, value in self.items():
            if not isinstance(value, (str, bytes)):
                value = str(value)
            if isinstance(name, str) and isinstance(value, str) and name.isascii() \
                    and value.isascii() and name.isprintable() and value.isprintable():
                # ASCII and printable: in every encoding CherryPy tries, with nothing to delete.
                pairs.append((name.encode('ascii'), value.encode('ascii')))
            else:
                pairs.append((self.encode_header_item(name), self.encode_header_item(value)))
        return pairs


# (the second, its HTTP date) of the latest answer: one date a second, not one an answer.
_date: tuple[int | None, str] = (None, '')


def http_date(moment: float) -> str:
    """Return httputil.HTTPDate(moment), worked out once a second (3 µs each time)."""
    global _date  # noqa: PLW0603  (one tuple, replaced whole: safe across threads)
    second = int(moment)
    if _date[0] != second:
        _date = (second, httputil.HTTPDate(second))
    return _date[1]


class GuardedResponse(cherrypy._cprequest.Response):
    """CherryPy's response with the same headers at the start, made for less work.

    Its Date is formatted once a second, and its headers are ResponseHeaders.
    """

    def __init__(self) -> None:
        """Start the answer as CherryPy's Response does (18.10), field for field."""
        self.status = None
        self.header_list = None
        self._body: list[bytes] = []
        self.time = time.time()
        self.headers = ResponseHeaders()
        dict.update(self.headers, {
            'Content-Type': 'text/html',
            'Server': 'CherryPy/' + cherrypy.__version__,
            'Date': http_date(self.time),
        })
        self.cookie = SimpleCookie()
