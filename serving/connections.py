"""What an answer does to its connection: HTTP/1.0 keep-alive as cheroot says it, a 408 cut off."""
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast
from wsgiref.types import StartResponse

from serving.request import short_page

if TYPE_CHECKING:
    from _typeshed import OptExcInfo

Headers = list[tuple[str, str]]

# After a 408 whose body read is still pending, how long the cut-short answer waits before it
# ends, so that hyper sends what it has before it drops the connection (cut_off).
CUT_OFF_GRACE = 0.05


def keeping_alive(start_response: StartResponse) -> StartResponse:
    """Wrap `start_response` so an HTTP/1.0 keep-alive answer says `Connection: Keep-Alive`.

    hyper keeps such a connection open and says so in lower case; cheroot spells it as
    HTTP/1.0 clients (and CherryPy's own suite) expect. An answer that closes says so instead.
    """
    def start(status: str, headers: Headers, exc_info: 'OptExcInfo | None' = None) -> object:
        if not any(name.lower() == 'connection' for name, _ in headers):
            headers = [*headers, ('Connection', 'Keep-Alive')]
        return start_response(status, headers, exc_info)
    return cast(StartResponse, start)


def cut_off(start_response: StartResponse,
            ours: Callable[[Headers], Headers]) -> Iterator[bytes]:
    """Answer 408 to a request whose body read is still pending, and drop the connection.

    granian 2.8.7 takes the read's lock once the app returns, holding the GIL: while the
    client sends nothing, the whole worker would stop. An answer that ends short of its
    Content-Length makes hyper drop the connection, which ends the read at once. `ours`
    adds the guard's headers.
    """
    status = '408 Request Timeout'
    page = short_page(status).encode()
    start_response(status, ours([
        ('Content-Type', 'text/html; charset=utf-8'),
        ('Content-Length', str(len(page) + 1)), ('Connection', 'close')]))
    return _cut_short(page)


def _cut_short(page: bytes) -> Iterator[bytes]:
    """Yield `page`, then end after CUT_OFF_GRACE: hyper sends it, then drops the connection."""
    yield page
    time.sleep(CUT_OFF_GRACE)
