"""Request bodies: read only where a handler takes one, whole, within BODY_TIMEOUT."""
import contextlib
import io
import re
import sys
import threading
from collections.abc import Iterator
from wsgiref.types import InputStream

import cherrypy

# CherryPy parses a multipart part for ~0.15 ms of CPU: 950 tiny parts in a 64 KiB body cost
# 0.14 s. A body of more parts gets 413 before CherryPy parses it.
MAX_PARTS = 100
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)', re.IGNORECASE)

# A landing page takes no uploads: bigger bodies get 413. The seed in landing.py may set
# CherryPy's own `server.max_request_body_size` instead.
MAX_BODY = 64 * 1024


def max_body() -> int | None:
    """Return the body cap: the seed's server.max_request_body_size, else MAX_BODY.

    0 is CherryPy's "no limit": None here, as the guard and `request.body.maxbytes` take it.
    """
    cap: int = cherrypy.config.get('server.max_request_body_size', MAX_BODY)
    return cap or None


class BodyTimeout(Exception):
    """The client did not send the whole request body within the deadline."""


class DeadlineInput:
    """wsgi.input read whole, at most `limit` bytes, within `timeout` s, on first use.

    granian's body reads block the calling thread until the client sends. The read runs in a
    thread of its own so the worker thread waits at most `timeout` seconds; a client still
    sending then gets 408 and a close (connections.cut_off), which also ends the reading thread.
    `pending` tells whether a read is still waiting for the client. Nothing reads until the
    app asks: paths that take no body never wait for one.
    """

    def __init__(self, raw: InputStream, limit: int | None, timeout: float, content_type: str = '',
                 waiting: threading.Semaphore | None = None) -> None:
        self.raw, self.limit, self.timeout = raw, limit, timeout
        self.content_type = content_type
        self.waiting = waiting
        self.buffer: io.BytesIO | None = None
        self.pending = False

    def _load(self) -> io.BytesIO:
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

    def _read_within_timeout(self) -> io.BytesIO:
        """Read the body in a thread of its own; wait for it at most `timeout` s."""
        chunks: list[bytes] = []
        done = threading.Event()

        def read() -> None:
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

    def read(self, size: int | None = -1) -> bytes:
        """Read up to `size` bytes of the body (all with -1 or None)."""
        return self._load().read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line of the body."""
        return self._load().readline(size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read the body's lines."""
        return self._load().readlines(hint)

    def __iter__(self) -> Iterator[bytes]:
        """Iterate over the body's lines."""
        return iter(self._load())


def too_many_parts(content_type: str, body: bytes) -> bool:
    """Tell whether `body` is multipart with more than MAX_PARTS parts."""
    found = _BOUNDARY.search(content_type) if content_type.lower().startswith('multipart/') \
        else None
    return found is not None and (
        body.count(b'--' + found.group(1).encode('latin-1')) > MAX_PARTS + 1)


# HandlerTools (CherryPy's tools that may answer in the handler's place) that never take a body.
STATIC_TOOLS = ('staticdir', 'staticfile')


def stands_in(tools: dict[str, dict[str, object]]) -> bool:
    """Tell whether a tool that is on may answer in the handler's place and take the body.

    CherryPy's HandlerTools answer some paths themselves: session_auth's `do_login` reads the
    login form's fields where dispatch found no handler. The static ones never take a body.
    """
    return any(settings.get('on') and name not in STATIC_TOOLS
               and isinstance(getattr(cherrypy.tools, name, None), cherrypy._cptools.HandlerTool)
               for name, settings in tools.items())


def takes_body() -> None:
    """Tell CherryPy not to read a request body where nothing can take one.

    Run before the body is read (`before_request_body`), once dispatch knows the handler: with
    no handler (a 404) or a static file the body is never read, so a slow uploader to them
    holds no thread; unless a tool may answer in the handler's place (stands_in). A body
    that is read is read within BODY_TIMEOUT (DeadlineInput).
    """
    request = cherrypy.serving.request
    tools = request.toolmaps.get('tools', {})
    handler = request.handler
    if (any(tools.get(name, {}).get('on') for name in STATIC_TOOLS)
            or (handler is None or isinstance(handler, cherrypy.NotFound))
            and not stands_in(tools)):
        request.process_request_body = False
