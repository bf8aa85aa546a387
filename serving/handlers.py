"""The handler tool: query parameters a handler does not take are dropped, str sent as UTF-8."""
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import cherrypy

# What a page handler returns: str or bytes, or an iterable of either, or nothing.
Body = str | bytes | Iterable[str | bytes] | None


def _accepted_params(callable_: Callable[..., object]) -> frozenset[str] | None:
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


def ignore_unused_params() -> None:
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


class Utf8Handler:
    """A page handler wrapped so that what it returns as str is sent as UTF-8 bytes.

    CherryPy's own encode tool does this with charset negotiation on every request: a sixth
    of the page's CPU here. Handlers return str or bytes (or iterables of either); a text
    answer without a charset gets `; charset=utf-8`. Like the encode tool, the wrapped
    handler stays reachable as `oldhandler`.
    """

    def __init__(self, oldhandler: Callable[..., Body]) -> None:
        self.oldhandler = oldhandler

    def __call__(self, *args: Any, **kwargs: Any) -> bytes | Iterable[bytes] | None:
        """Call the page handler; encode a str answer, or each str chunk it yields."""
        body = self.oldhandler(*args, **kwargs)
        if isinstance(body, bytes):
            return body
        headers = cherrypy.serving.response.headers
        content_type = dict.get(headers, 'Content-Type', '')
        # Only text/* names a charset, as with CherryPy's encode tool: application/json has no
        # such parameter (RFC 8259), and an app's own type is left as it set it.
        if 'charset' not in content_type and content_type.startswith('text/'):
            headers['Content-Type'] = f'{content_type}; charset=utf-8'
        if body is None:
            return body
        # Encoded, the length differs from the handler's count of characters: CherryPy's
        # encode tool drops a handler's Content-Length too, and finalize() counts the bytes.
        # A stream keeps its own, as with that tool: nothing could count it before it is sent.
        # So does an iterable of another type than text/* (that tool leaves those alone): a
        # file from serve_file, which finalize() would otherwise read whole into memory.
        if not cherrypy.serving.response.stream and (
                isinstance(body, str) or content_type.startswith('text/')):
            headers.pop('Content-Length', None)
        if isinstance(body, str):
            return body.encode('utf-8')
        return (chunk.encode('utf-8') if isinstance(chunk, str) else chunk for chunk in body)


def prepare_handler() -> None:
    """Drop unused query parameters, then wrap the handler in a Utf8Handler (tools.handler).

    One tool for both: each tool costs its setup on every request.
    """
    request = cherrypy.serving.request
    if request.handler is not None:
        ignore_unused_params()
        request.handler = Utf8Handler(request.handler)


# `tools.handler`, which startup.configure() registers and turns on for every app.
TOOL = cherrypy.Tool('before_handler', prepare_handler, priority=90)
