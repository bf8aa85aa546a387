"""What CherryPy would serve for a static path: its dispatcher's config, the file, the headers.

serving/static_files.py asks this once per path, then answers from what it returns.
"""
import dataclasses
import mimetypes
import os
import re
import stat
from collections.abc import Mapping
from typing import Any

import cherrypy
from cherrypy.lib import httputil

from serving.static import static_allowed, staticdir_target, staticfile_target

# Files up to this size are kept in memory (StaticFile.body) and handed to granian whole: its
# own I/O writes them, so a slow reader holds no thread. Bigger ones are read as they go.
IN_MEMORY = 256 * 1024
# Tools that change nothing in a static file's answer: error-time logging, and the ones
# that act only on a handler (static answers have none), encode among them while it is off.
_HARMLESS = frozenset({'staticdir', 'staticfile', 'response_headers', 'log_tracebacks',
                       'log_headers', 'trailing_slash', 'handler'})
# Keys of a static tool this answers as CherryPy would; others (index, debug) send the
# path to CherryPy.
_KNOWN_KEYS = frozenset({'on', 'root', 'dir', 'filename', 'section', 'match', 'content_types'})


@dataclasses.dataclass(frozen=True)
class StaticFile:
    """One path's answer: the file it names, as found, and its 200's headers."""

    path: str
    identity: tuple[int, int, int]  # (inode, size, mtime in ns): a change means read anew
    size: int
    last_modified: str
    headers: tuple[tuple[str, str], ...]  # the 200's headers but Date and Content-Length
    body: bytes | None  # None: read as it goes (past IN_MEMORY, or StaticFiles' budget)
    logged: bool


def dispatched_config(app: Any, path: str) -> dict[str, Any] | None:
    """Return the config CherryPy's dispatcher merges for `path`, or None for another dispatcher.

    The dispatcher reads the app's sections and each object's `_cp_config` on the way: the
    config a request for `path` would get, tools and all.
    """
    request = app.request_class(httputil.Host('127.0.0.1', 80, ''),
                                httputil.Host('127.0.0.1', 0, ''))
    request.app = app
    dispatch = app.find_config(path, 'request.dispatch', request.dispatch)
    if type(dispatch) is not cherrypy.dispatch.Dispatcher:
        return None
    previous = cherrypy.serving.request, cherrypy.serving.response
    cherrypy.serving.load(request, app.response_class())
    try:
        dispatch.find_handler(path)
    finally:
        cherrypy.serving.load(*previous)
    config: dict[str, Any] = request.config
    return config


def static_file_of(config: Mapping[str, Any], path: str) -> str | None:
    """Return the file a static tool in `config` serves for `path`, or None.

    None too where the config has another tool on, or a setting this does not answer as
    CherryPy would, or names hooks or response headers of its own.
    """
    for key, value in config.items():
        if key.startswith(('hooks.', 'response.headers.')):
            return None
        if key.startswith('tools.'):
            tool, _, setting = key[6:].partition('.')
            if setting == 'on' and value and tool not in _HARMLESS:
                return None
            if tool in ('staticdir', 'staticfile') and setting not in _KNOWN_KEYS:
                return None
    if config.get('tools.staticfile.on'):
        tool = 'staticfile'
    elif config.get('tools.staticdir.on'):
        tool = 'staticdir'
    else:
        return None
    prefix = f'tools.{tool}.'
    settings = {key[len(prefix):]: value for key, value in config.items()
                if key.startswith(prefix)}
    folder, name = (staticfile_target(settings) if tool == 'staticfile'
                    else staticdir_target(settings, path))
    match = settings.get('match')
    if not os.path.isabs(folder) or match and not re.search(match, path) \
            or not static_allowed(folder, name):
        return None
    return os.path.join(folder, name)


def read_answer(filename: str, config: Mapping[str, Any]) -> StaticFile | None:
    """Read `filename` and build its answer as CherryPy's serve_file would; None if no file."""
    try:
        # Not blocking: a FIFO in static/ would hold the thread until something wrote to it.
        descriptor = os.open(filename, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode):  # a folder, a FIFO: CherryPy's to answer
            return None
        with open(descriptor, 'rb', closefd=False) as file:
            body = file.read() if found.st_size <= IN_MEMORY else None
    finally:
        os.close(descriptor)
    # What was read is what is sent, were the file written meanwhile.
    size = found.st_size if body is None else len(body)
    last_modified = httputil.HTTPDate(found.st_mtime)
    # Header by header as CherryPy sets them: its defaults, the section's response_headers,
    # then serve_file's own.
    headers = httputil.HeaderMap()
    headers['Content-Type'] = 'text/html'
    if config.get('tools.response_headers.on'):
        for name, value in config.get('tools.response_headers.headers') or ():
            headers[name] = value
    headers['Last-Modified'] = last_modified
    tool = 'staticfile' if config.get('tools.staticfile.on') else 'staticdir'
    content_type = content_type_of(filename, config.get(f'tools.{tool}.content_types'))
    if content_type is not None:
        headers['Content-Type'] = content_type
    for name in ('Server', 'Date', 'Content-Length'):
        headers.pop(name, None)
    return StaticFile(
        filename, (found.st_ino, found.st_size, found.st_mtime_ns), size,
        last_modified, tuple((str(name), str(value)) for name, value in headers.items()),
        body, bool(config.get('request.access_log', True)))


def content_type_of(filename: str, content_types: Mapping[str, str] | None) -> str | None:
    """Return the Content-Type CherryPy's static tools give `filename`, or None."""
    ext = ''
    dot = filename.rfind('.')
    if dot != -1:
        ext = filename[dot:].lower()
    if content_types:
        given = content_types.get(ext.lstrip('.'))
        if given is not None:
            return str(given)
    return mimetypes.types_map.get(ext)
