"""Request IDs: one per request, on its answer, in the JSON access log and in its error lines.

A load balancer's own ID (ALB's X-Amzn-Trace-Id aside, most send X-Request-ID) is kept when a
trusted proxy (TRUSTED_PROXIES) sends it and it is short and plain; any other is replaced, so
a client cannot write what lands in the logs. The app reads it as the request's
`X-Request-ID` header.
"""
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, cast
from wsgiref.types import StartResponse, WSGIEnvironment

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

HEADER = 'X-Request-ID'
ENVIRON_KEY = 'HTTP_X_REQUEST_ID'
# What a kept ID may be: printable ASCII without spaces or quotes, as UUIDs, hex, base64 and
# AWS trace IDs are; at most 128 characters.
_KEPT = re.compile(r'[A-Za-z0-9._:+/=-]{1,128}', re.ASCII)

# The ID of the request this thread serves now, for its error lines.
current = threading.local()


def assign(environ: WSGIEnvironment, trusted: bool) -> str:
    """Return the request's ID, put in its environ: a trusted proxy's if plain, else a new one."""
    given = environ.get(ENVIRON_KEY, '')
    request_id = given if trusted and _KEPT.fullmatch(given) else os.urandom(16).hex()
    environ[ENVIRON_KEY] = current.value = request_id
    return request_id


def answering(start_response: StartResponse, request_id: str) -> StartResponse:
    """Wrap `start_response` so the answer names the request's ID."""
    def start(status: str, headers: list[tuple[str, str]],
              exc_info: 'OptExcInfo | None' = None) -> Callable[[bytes], object]:
        headers = [*headers, (HEADER, request_id)]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)
    return cast(StartResponse, start)


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
