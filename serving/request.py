"""The app's request class: the project's error page from the start, its hooks in place."""
import cherrypy

from serving.bodies import takes_body
from serving.static import static_only


def error_page(status: str, message: str, traceback: str, version: str) -> str:
    """Render an error as a short page that names neither tracebacks nor versions."""
    return f'<!DOCTYPE html>\n<title>{status}</title>\n<h1>{status}</h1>\n'


# The status the guard answers when the app fails, whatever it raised.
SERVER_ERROR = '500 Internal Server Error'


class GuardedRequest(cherrypy._cprequest.Request):
    """CherryPy's request with the production error settings from the start.

    CherryPy reads headers (RFC 2047 words, cookies) before the app's config applies, and the
    class defaults then show tracebacks on its own version-naming page. Its hooks (below) keep
    static files to their folder and bodies unread where nothing takes one.
    """

    show_tracebacks = False
    error_page = {'default': error_page}


def check_request() -> None:
    """Once dispatch knows the handler, before any body is read: static paths, then the body.

    A hook of GuardedRequest's own, not a tool: a tool's setup costs every request.
    """
    static_only()
    takes_body()


GuardedRequest.hooks = cherrypy._cprequest.HookMap(cherrypy._cprequest.hookpoints)


GuardedRequest.hooks.attach('before_request_body', check_request, priority=10)
