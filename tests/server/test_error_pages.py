"""Whatever fails, the client gets the project's page; a slow upload ends at BODY_TIMEOUT.

Real `python tests/raising_landing.py` and `tests/slow_landing.py` processes: handlers that
raise SystemExit, KeyboardInterrupt and the rest, and a handler that reads an upload.
"""
import os
import selectors
import threading
import time

import pytest

import hostile_corpus as corpus
import serving.guard
import serving.request
from conftest import OUR_HEADERS, ROOT, request, wait_until
from rawhttp import connect, read_response

RAISING_APP = os.path.join(ROOT, 'tests', 'raising_landing.py')
SLOW_APP = os.path.join(ROOT, 'tests', 'slow_landing.py')
# CherryPy's message for an unexpected error, which its error page shows.
UNEXPECTED = ('The server encountered an unexpected condition which prevented it from '
              'fulfilling the request.')


@pytest.fixture(scope='module')
def raising(tmp_path_factory):
    """The raising app, served by one process for the module."""
    from conftest import ServerProcess
    process = ServerProcess(tmp_path_factory.mktemp('raising'), env={'THREADS': '4'},
                            script=RAISING_APP)
    try:
        yield process.wait_ready()
    finally:
        process.kill()


@pytest.mark.parametrize('path, message', [
    ('/raising?what=exit', ''), ('/raising?what=interrupt', ''),
    ('/raising?what=error', UNEXPECTED), ('/raising?what=generator', ''), ('/streaming', '')])
def test_a_handler_raising_anything_gets_our_500_page_with_the_security_headers(
        raising, path, message):
    """SystemExit and KeyboardInterrupt pass CherryPy's traps: the guard answers our page.

    An error CherryPy catches keeps the message its error page showed.
    """
    status, headers, body = request(raising.port, 'GET', path)
    assert status == 500
    assert body == serving.request.short_page(serving.request.SERVER_ERROR, message).encode()
    for name, value in OUR_HEADERS:
        assert headers[name] == value


def test_the_server_serves_on_after_handlers_raise_systemexit(raising):
    """A SystemExit in one request ends neither the thread pool nor the worker."""
    for _ in range(8):  # twice the pool
        assert request(raising.port, 'GET', '/raising?what=exit')[0] == 500
    assert request(raising.port, 'GET', '/healthcheck')[0] == 200
    assert raising.proc.poll() is None


@pytest.fixture(scope='module')
def uploads(tmp_path_factory):
    """The slow app (it has /upload) with BODY_TIMEOUT=2 and THREADS=2."""
    from conftest import ServerProcess
    process = ServerProcess(tmp_path_factory.mktemp('uploads'),
                            env={'THREADS': '2', 'BODY_TIMEOUT': '2'}, script=SLOW_APP)
    try:
        yield process.wait_ready()
    finally:
        process.kill()


def start_upload(port, sent=b'x' * 10, declared=60000):
    """Open a POST /upload declaring `declared` bytes and send only `sent`."""
    sock = connect(port, timeout=15)
    sock.sendall(b'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream'
                 b'\r\nContent-Length: %d\r\n\r\n' % declared + sent)
    return sock


def read_answer(sock):
    """Read one answer (Content-Length framed), waiting at most the socket's timeout."""
    answer = read_response(sock)
    return answer.status, answer.headers


def test_a_whole_upload_reaches_the_handler(uploads):
    """A body that arrives is read and handed over whole."""
    status, _, body = request(uploads.port, 'POST', '/upload', body=b'y' * 5000)
    assert (status, body) == (200, b'5000')


def test_an_upload_slower_than_body_timeout_gets_408_within_the_deadline(uploads):
    """The handler's body read gives up after BODY_TIMEOUT: 408 with our page, saying close."""
    with start_upload(uploads.port) as sock:
        started = time.monotonic()
        status, headers = read_answer(sock)
        waited = time.monotonic() - started
    assert (status, headers['connection'], headers['server']) == (408, 'close', 'Landing')
    assert waited < 10  # BODY_TIMEOUT is 2; the socket would give up at 15


def test_slow_uploaders_that_close_on_their_408_free_the_threads(uploads):
    """Twice as many slow uploads as threads: each gets 408 or 503 and closes; the probe answers.

    (503: past the cap of threads waiting for bodies at once.)
    """
    socks = [start_upload(uploads.port) for _ in range(4)]
    answered = []
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        try:
            # Whichever answers first is read and closed: its thread then takes the next.
            for _ in range(len(socks)):
                ready = selector.select(timeout=15)
                if not ready:
                    break
                sock = ready[0][0].fileobj
                answered.append(read_answer(sock)[0])
                selector.unregister(sock)
                sock.close()
        finally:
            for sock in socks:
                sock.close()
    assert len(answered) == 4
    assert set(answered) <= {408, 503}
    assert 408 in answered
    assert request(uploads.port, 'GET', '/healthcheck', timeout=5)[0] == 200


def answer_or_close(sock):
    """Return the status of the one answer on `sock` (None if it closed with none), then EOF.

    Raise TimeoutError if the server neither answers nor closes within the socket's timeout.
    """
    reader = sock.makefile('rb')
    line = reader.readline()
    status = int(line.split()[1]) if line else None
    while reader.read(65536):
        pass  # what follows the answer, up to the server's close
    return status


def test_silent_uploaders_after_their_408_hold_no_thread(uploads):
    """Silent uploaders after their 408 hold no thread: two slow pages then get both.

    4 uploads stay silent and open with THREADS=2: each gets 408 (or a close) within two
    rounds of BODY_TIMEOUT and the server closes it. granian 2.8.7 takes the body's lock,
    holding the GIL, when the app returns while a read is pending: without the guard's
    cut-short 408 one silent client stopped the whole worker.
    """
    socks = [start_upload(uploads.port) for _ in range(4)]
    try:
        for sock in socks:
            sock.settimeout(2 * 2 + 5)  # two rounds of BODY_TIMEOUT=2 (2 threads), and margin
            assert answer_or_close(sock) in (408, 503, None)
        assert request(uploads.port, 'GET', '/healthcheck', timeout=5)[0] == 200
        started = uploads.stderr().count('slow request started')
        answers = []
        slow = [threading.Thread(target=lambda: answers.append(
            request(uploads.port, 'GET', '/slow?seconds=2', timeout=15)[0])) for _ in range(2)]
        for thread in slow:
            thread.start()
        # Both slow pages hold a thread at once: the uploaders hold none.
        wait_until(lambda: uploads.stderr().count('slow request started') == started + 2,
                   deadline=10, what='two slow pages running at once')
        for thread in slow:
            thread.join(20)
        assert answers == [200, 200]
    finally:
        for sock in socks:
            sock.close()


def test_past_half_the_pool_waiting_for_bodies_an_upload_gets_503_at_once(uploads):
    """Slow uploads never take the whole pool: past half of it, 503 at once.

    THREADS=2: one thread may wait for a body; a second slow upload meanwhile gets 503 before
    the first one's 408.
    """
    socks = [start_upload(uploads.port) for _ in range(2)]
    try:
        with selectors.DefaultSelector() as selector:
            for sock in socks:
                selector.register(sock, selectors.EVENT_READ)
            ready = selector.select(timeout=15)
        assert ready
        first = ready[0][0].fileobj
        assert read_answer(first)[0] == 503
        other = socks[1] if first is socks[0] else socks[0]
        assert read_answer(other)[0] == 408
        assert request(uploads.port, 'GET', '/healthcheck', timeout=5)[0] == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_multipart_upload_of_many_parts_costs_a_handler_little_cpu(uploads):
    """950 tiny parts in 63 KB to a handler that takes a body: 413 for < 50 ms of server CPU."""
    parts = b''.join(b'--b0\r\nContent-Disposition: form-data; name="f"\r\n\r\na\r\n'
                     for _ in range(950)) + b'--b0--\r\n'
    costs, status = [], None
    for _ in range(3):  # the least of three: other threads' noise only adds
        before = corpus.tree_cpu(uploads.proc.pid)
        status = request(uploads.port, 'POST', '/upload', body=parts,
                         headers={'Content-Type': 'multipart/form-data; boundary=b0'})[0]
        costs.append(corpus.tree_cpu(uploads.proc.pid) - before)
    assert status == 413
    assert min(costs) < corpus.CPU_BOUND
