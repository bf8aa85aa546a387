"""Big answers sent from a thread of their own, so a slow reader never holds a pool thread."""
import threading

import cherrypy

# A big answer goes out this many bytes at a time; granian queues 4 chunks, so a reader that
# stops holds a thread of its own and a few chunks, never the whole file.
STREAM_CHUNK = 16 * 1024


class Streamed:
    """A big answer that streaming_runner has a thread of its own pull, STREAM_CHUNK at a time.

    CherryPy's request has ended; what is left is its body iterator (a file read as it goes).
    Under another WSGI server it is an ordinary iterable.
    """

    def __init__(self, body):
        self.body = body

    def __iter__(self):
        """Yield the body in pieces of at most STREAM_CHUNK bytes."""
        for chunk in self.body:
            for start in range(0, len(chunk), STREAM_CHUNK):
                yield chunk[start:start + STREAM_CHUNK]

    def close(self):
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

    def __init__(self, protocol):
        self.protocol = protocol

    def response_bytes(self, status, headers, body):
        """Send a whole answer (granian writes it from its own I/O)."""
        self.protocol.response_bytes(status, headers, body)

    def response_iter(self, status, headers, body):
        """Send an iterated answer: a Streamed one from a thread of its own."""
        if isinstance(body.inner, Streamed):
            try:
                threading.Thread(target=self.protocol.response_iter, args=(status, headers, body),
                                 name='stream', daemon=True).start()
                return
            except RuntimeError:  # no thread to be had (a pids limit): pull it from this one
                cherrypy.log('no thread for a streamed answer: sending it from the pool', 'STREAM')
        self.protocol.response_iter(status, headers, body)


def streaming_runner(runner):
    """Return granian's WSGI `runner` (its callback) sending Streamed answers from own threads."""

    def run(protocol, scope):
        return runner(_Protocol(protocol), scope)

    return run
