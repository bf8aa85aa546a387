"""Big answers sent from a thread of their own, so a slow reader never holds a pool thread."""
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import cherrypy
from granian.wsgi import ResponseIterWrap

if TYPE_CHECKING:
    from granian._granian import WSGIScope  # in granian's stub only

# Answers with a length up to this size (the page, the logo) are handed to granian whole,
# which writes them from its own I/O: a slow reader holds at most this much, never a thread.
# Bigger ones (a big file in static/) are pulled by a thread of their own (Streamed).
ONE_PIECE = 64 * 1024
# A big answer goes out this many bytes at a time; granian queues 4 chunks, so a reader that
# stops holds a thread of its own and a few chunks, never the whole file.
STREAM_CHUNK = 16 * 1024


class Streamed:
    """A big answer that streaming_runner has a thread of its own pull, STREAM_CHUNK at a time.

    CherryPy's request has ended; what is left is its body iterator (a file read as it goes).
    Under another WSGI server it is an ordinary iterable.
    """

    def __init__(self, body: Iterable[bytes]) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        """Yield the body in pieces of at most STREAM_CHUNK bytes."""
        for chunk in self.body:
            for start in range(0, len(chunk), STREAM_CHUNK):
                yield chunk[start:start + STREAM_CHUNK]

    def close(self) -> None:
        """Let the body go (granian calls this at the end, or when the client goes).

        Not CherryPy's close: that ran in the pool thread, where its request lives. The file
        closes once the last reference to it goes.
        """
        self.body = ()


class _Protocol:
    """granian's per-request protocol object, sending a Streamed answer from a new thread.

    granian's response_iter pulls the iterator in the calling thread, waiting whenever the
    client reads slowly; called from a thread of our own, the pool's thread is free at once.
    """

    __slots__ = ('protocol',)

    # granian's protocol object (Rust) is not in its type stubs: Any.
    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Send a whole answer (granian writes it from its own I/O)."""
        self.protocol.response_bytes(status, headers, body)

    def response_iter(self, status: int, headers: list[tuple[str, str]],
                      body: ResponseIterWrap) -> None:
        """Send an iterated answer: a Streamed one from a thread of its own."""
        if isinstance(body.inner, Streamed):
            try:
                threading.Thread(target=self.protocol.response_iter, args=(status, headers, body),
                                 name='stream', daemon=True).start()
                return
            except RuntimeError:  # no thread to be had (a pids limit): pull it from this one
                cherrypy.log('no thread for a streamed answer: sending it from the pool', 'STREAM')
        self.protocol.response_iter(status, headers, body)


# granian's WSGI callback: (its protocol object, the request's scope) -> the status code.
Runner = Callable[[Any, 'WSGIScope'], int]


def streaming_runner(runner: Runner) -> Runner:
    """Return granian's WSGI `runner` (its callback) sending Streamed answers from own threads."""

    def run(protocol: Any, scope: 'WSGIScope') -> int:
        return runner(_Protocol(protocol), scope)

    return run


def resumed(first: bytes, chunks: Iterator[bytes], answer: Iterable[bytes]) -> Iterator[bytes]:
    """Yield `first`, then the rest of `chunks`; close `answer` at the end, or when closed."""
    try:
        yield first
        yield from chunks
    finally:
        if hasattr(answer, 'close'):
            answer.close()
