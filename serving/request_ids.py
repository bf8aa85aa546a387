"""Request IDs: one per request, on its answer, in the JSON access log and in its error lines.

A load balancer's own ID (ALB's X-Amzn-Trace-Id aside, most send X-Request-ID) is kept when a
trusted proxy (TRUSTED_PROXIES) sends it and it is short and plain; any other is replaced, so
a client cannot write what lands in the logs. The app reads it as
`cherrypy.request.wsgi_environ['landing.request_id']` (and as the X-Request-ID header when the
request came with one: replaced, the app never sees a forged one).
"""
import logging
import os
import re
import threading
from wsgiref.types import WSGIEnvironment

HEADER = 'X-Request-ID'
ENVIRON_KEY = 'HTTP_X_REQUEST_ID'
# Where the app finds the ID in its environ.
KEY = 'landing.request_id'
# What a kept ID may be: printable ASCII without spaces or quotes, as UUIDs, hex, base64 and
# AWS trace IDs are; at most 128 characters.
_KEPT = re.compile(r'[A-Za-z0-9._:+/=-]{1,128}', re.ASCII)

# The ID of the request this thread serves now, for its error lines.
current = threading.local()


def assign(environ: WSGIEnvironment, trusted: bool) -> str:
    """Return the request's ID, noted in its environ: a trusted proxy's if plain, else new."""
    given = environ.get(ENVIRON_KEY)
    if given is None:  # most requests: nothing for CherryPy to parse as a header
        request_id = os.urandom(16).hex()
    else:
        request_id = given if trusted and _KEPT.fullmatch(given) else os.urandom(16).hex()
        environ[ENVIRON_KEY] = request_id
    environ[KEY] = current.value = request_id
    return request_id


def forget() -> None:
    """End this thread's request: later lines it logs are no request's."""
    current.value = None


class Tagged(logging.Filter):
    """Adds `request_id=...` to each error line logged while a request is served.

    On the line's first line: a traceback below it stays as CherryPy writes it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record's message with this thread's request ID, if any; keep the record."""
        request_id = getattr(current, 'value', None)
        if request_id and isinstance(record.msg, str):
            first, newline, rest = record.msg.partition('\n')
            record.msg = f'{first} request_id={request_id}{newline}{rest}'
        return True


TAGGED = Tagged()
