"""The guard in front of CherryPy: what it refuses, what it mends, what it adds to every answer.

Called in this process through the same WSGI app granian serves (the `in_process` fixture), so
each rule is seen on its own; test_hostile.py sends the same shapes to a real server.
"""
import gc
import io
import multiprocessing
import os
import threading

import cherrypy
import pytest
from granian.wsgi import _callback_wrapper as wsgi_callback

import landing
import serving.bodies
import serving.guard
import serving.handlers
import serving.refusals
import serving.request
import serving.settings
import serving.static
import serving.streaming
import slow_landing
from conftest import OUR_HEADERS, ROOT, request
from rawhttp import exchange, statuses

LOGO = os.path.join(ROOT, 'static', 'logo.png')
SLOW_APP = os.path.join(ROOT, 'tests', 'slow_landing.py')


@pytest.fixture
def collected_garbage():
    """Collect, inside the test, the file CherryPy's staticfile leaves open on range answers."""
    yield
    gc.collect()


def leaves_file_to_gc(test):
    """Mark a test whose range answer leaves CherryPy's file object to the garbage collector."""
    test = pytest.mark.usefixtures('collected_garbage')(test)
    return pytest.mark.filterwarnings(
        'ignore::ResourceWarning', 'ignore::pytest.PytestUnraisableExceptionWarning')(test)
SECURITY_HEADERS = {name for name, _ in OUR_HEADERS}


@pytest.mark.parametrize('host', [
    'localhost', 'example.com', 'example.com:8080', '127.0.0.1:80', '[::1]:8080', 'a-b.c_d',
])
def test_valid_hosts_pass(in_process, host):
    """Names, addresses, bracketed IPv6 and ports pass to the app."""
    assert in_process('GET', '/healthcheck', {'Host': host})[0] == 200


@pytest.mark.parametrize('host', [
    'a.example,b.example',  # two Host fields, joined by the server
    'bad host', 'user@example.com', 'example.com/path', 'exa\x00mple', 'example.com:80:80',
    '[::1', 'example.com:123456', '\u00e9xample.com',
])
def test_invalid_or_duplicate_hosts_get_400_with_our_page_and_headers(in_process, host):
    """A Host that is not one RFC 3986 host[:port] is refused before CherryPy sees it."""
    status, headers, body = in_process('GET', '/', {'Host': host})
    assert status == 400
    assert set(headers) >= SECURITY_HEADERS
    assert headers['Connection'] == 'close'
    assert b'400 Bad Request' in body


def test_http_1_1_without_host_is_refused_and_http_1_0_without_host_is_served(in_process):
    """HTTP/1.1 must name a Host (RFC 9112 §3.2); HTTP/1.0 may not."""
    assert in_process('GET', '/', {'Host': ''})[0] == 400
    assert in_process('GET', '/', {'Host': ''}, protocol='HTTP/1')[0] == 200


def test_granians_http_1_name_reaches_cherrypy_as_http_1_0(in_process):
    """For HTTP/1.0 granian says SERVER_PROTOCOL 'HTTP/1'; CherryPy would answer 500 to that."""
    status, _, body = in_process('GET', '/', protocol='HTTP/1')
    assert status == 200
    assert body == in_process('GET', '/')[2]


@pytest.mark.parametrize('path', [
    '/' + 'a' * (serving.refusals.MAX_TARGET + 1),
    '/a' * (serving.refusals.MAX_SEGMENTS + 1),
    '/?' + 'q' * serving.refusals.MAX_TARGET,
])
def test_long_or_deep_targets_get_414_before_dispatch(in_process, path):
    """CherryPy's dispatch cost grows with the path: past the caps the answer is 414."""
    assert in_process('GET', path)[0] == 414


def test_a_declared_body_over_the_cap_gets_413_before_anything_reads_it():
    """Content-Length over server.max_request_body_size: 413, the app never called."""
    called = []
    guard = serving.guard.Guard(lambda environ, start: called.append(1),
                                multiprocessing.RawValue('b'), max_body=10)
    answers = []
    body = guard({'HTTP_HOST': 'x', 'SERVER_PROTOCOL': 'HTTP/1.1', 'PATH_INFO': '/',
                  'CONTENT_LENGTH': '11'}, lambda status, headers: answers.append(status))
    assert answers == ['413 Content Too Large']
    assert called == []
    assert b'413' in b''.join(body)


@pytest.mark.parametrize('size, status', [(1000, 200), (serving.bodies.MAX_BODY + 1, 413)])
def test_a_chunked_body_over_the_cap_gets_413_as_it_is_read(start_server, size, status):
    """No declared length: CherryPy counts what it reads (request.body.maxbytes) and stops."""
    app = start_server(script=SLOW_APP).wait_ready()
    chunk = b'x' * size
    raw = (b'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n'
           b'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
           + f'{size:x}'.encode() + b'\r\n' + chunk + b'\r\n0\r\n\r\n')
    answer = exchange(app.port, raw, timeout=15)
    if status == 413 and answer.endswith(b'<RST>') and not statuses(answer):
        return  # closed with the rest of the body unread: the reset can beat the 413 to us
    assert statuses(answer) == [status]


def plain_environ():
    """The least environ a WSGI server hands the guard: GET / with a Host and no body."""
    return {'HTTP_HOST': 'x', 'SERVER_PROTOCOL': 'HTTP/1.1', 'PATH_INFO': '/',
            'wsgi.input': io.BytesIO()}


def range_answer(in_process, value):
    """GET /logo.png with `Range: value`; return (status, headers, body)."""
    return in_process('GET', '/logo.png', {'Range': value})


@leaves_file_to_gc
def test_one_satisfiable_range_gets_206_with_just_those_bytes(in_process):
    """bytes=0-99 → 206, Content-Range, 100 bytes: single ranges work as before."""
    status, headers, body = range_answer(in_process, 'bytes=0-99')
    size = os.path.getsize(LOGO)
    assert status == 206
    assert headers['Content-Range'] == f'bytes 0-99/{size}'
    assert len(body) == 100


@leaves_file_to_gc
def test_a_suffix_range_gets_the_last_bytes(in_process):
    """bytes=-10 → the file's last 10 bytes."""
    status, _, body = range_answer(in_process, 'bytes=-10')
    with open(LOGO, 'rb') as logo:
        assert (status, body) == (206, logo.read()[-10:])


@leaves_file_to_gc
def test_an_unsatisfiable_range_gets_416(in_process):
    """A range past the end of the file: 416, no body to speak of."""
    assert range_answer(in_process, 'bytes=999999999-')[0] == 416


@pytest.mark.parametrize('value', [
    'bytes=' + ','.join(['0-'] * 5000),  # 5,000 whole copies: 63 MB on cheroot
    'bytes=0-1,0-1', 'bytes=0-0,1-1,2-2', 'bytes=abc', 'bytes=0-1,,', 'bytes=--1', 'bytes=-',
    'bytes=5-1', 'items=0-1', 'bytes = 0-1', 'bytes=0-1;x', 'bytes=' + '9' * 40 + '-', 'bytes=-0',
    'bytes=-000',
])
def test_multiple_or_malformed_ranges_are_ignored_and_the_whole_file_served(in_process, value):
    """RFC 9110 §14.2 lets a server ignore Range: the answer is never bigger than the file."""
    status, headers, body = range_answer(in_process, value)
    with open(LOGO, 'rb') as logo:
        assert (status, body) == (200, logo.read())
    assert 'Content-Range' not in headers


@pytest.mark.parametrize('name', ['If-Modified-Since', 'If-Unmodified-Since'])
@pytest.mark.parametrize('value', ['garbage', '', 'Mon, 99 Foo 2020 99:99:99 GMT', '0'])
def test_unparsable_date_validators_are_ignored(in_process, name, value):
    """RFC 9110 §13.1.3/§13.1.4: a validator that is not a date is ignored, so 200, not 412."""
    status, _, body = in_process('GET', '/logo.png', {name: value})
    assert status == 200
    assert len(body) == os.path.getsize(LOGO)


def test_a_valid_if_modified_since_still_gets_304(in_process):
    """The mend leaves real dates alone: 304 still works."""
    _, headers, _ = in_process('GET', '/logo.png')
    validator = {'If-Modified-Since': headers['Last-Modified']}
    status, _, body = in_process('GET', '/logo.png', validator)
    assert (status, body) == (304, b'')


@pytest.mark.parametrize('path, status', [
    ('/', 200), ('/healthcheck', 200), ('/logo.png', 200), ('/nope', 404),
])
def test_every_answer_carries_the_security_headers_and_no_version(in_process, path, status):
    """Server: Landing, nosniff, CSP and Referrer-Policy on answers and errors alike."""
    got, headers, _ = in_process('GET', path)
    assert got == status
    assert dict(OUR_HEADERS).items() <= headers.items()


def test_the_charset_is_named_with_a_space_as_the_contract_says(in_process):
    """CherryPy writes 'text/html;charset=utf-8'; answers say 'text/html; charset=utf-8'."""
    assert in_process('GET', '/')[1]['Content-Type'] == 'text/html; charset=utf-8'


def test_small_answers_are_handed_over_in_one_piece():
    """A body under ONE_PIECE becomes a one-item list: granian writes it from its own I/O."""
    closed = []

    class Body:
        def __iter__(self):
            return iter([b'a', b'b'])

        def close(self):
            closed.append(True)

    def app(environ, start):
        start('200 OK', [('Content-Length', '2')])
        return Body()

    guard = serving.guard.Guard(app, multiprocessing.RawValue('b'), landing.HEADERS)
    answer = guard(plain_environ(), lambda *args: None)
    assert answer == [b'ab']
    assert closed == [True]


@pytest.mark.parametrize('length', [None, 'x'])
def test_unsized_answers_stream_as_they_are(length):
    """With no Content-Length (or a garbage one), the app's iterable goes out unchanged."""
    body = iter([b'chunk'])

    def app(environ, start):
        start('200 OK', [] if length is None else [('Content-Length', length)])
        return body

    guard = serving.guard.Guard(app, multiprocessing.RawValue('b'), landing.HEADERS)
    answer = guard(plain_environ(), lambda *args: None)
    assert not isinstance(answer, list)  # pulled chunk by chunk, not joined
    assert list(answer) == [b'chunk']


def test_big_answers_are_streamed_in_small_chunks_after_the_app_closes():
    """Past ONE_PIECE: a Streamed answer, STREAM_CHUNK at a time; CherryPy's side closed now."""
    closed = []
    size = serving.guard.ONE_PIECE + 1

    class Body:
        def __iter__(self):
            return iter([b'a' * (size - 1), b'b'])

        def close(self):
            closed.append(True)

    def app(environ, start):
        start('200 OK', [('Content-Length', str(size))])
        return Body()

    guard = serving.guard.Guard(app, multiprocessing.RawValue('b'), landing.HEADERS)
    answer = guard(plain_environ(), lambda *args: None)
    assert isinstance(answer, serving.streaming.Streamed)
    assert closed == [True]
    chunks = list(answer)
    assert b''.join(chunks) == b'a' * (size - 1) + b'b'
    assert max(len(chunk) for chunk in chunks) == serving.streaming.STREAM_CHUNK
    answer.close()
    assert list(answer) == []


class Protocol:
    """granian's protocol object as the runner sees it: notes which thread sent what."""

    def __init__(self):
        self.sent, self.done = [], threading.Event()

    def response_bytes(self, status, headers, body):
        """Note a whole answer."""
        self.sent.append(('bytes', status, body, threading.current_thread()))
        self.done.set()

    def response_iter(self, status, headers, body):
        """Note an iterated answer, pulled here."""
        self.sent.append(('iter', status, b''.join(body.inner), threading.current_thread()))
        self.done.set()


@pytest.mark.parametrize('answer, kind, own_thread', [
    ([b'whole'], 'bytes', False), (iter([b'pulled']), 'iter', False),
    (serving.streaming.Streamed([b'streamed']), 'iter', True)])
def test_the_runner_sends_streamed_answers_from_a_thread_of_their_own(answer, kind, own_thread):
    """Lists and iterators go as granian sends them; a Streamed one from a new thread."""
    def app(environ, start):
        start('200 OK', [])
        return answer

    protocol = Protocol()
    serving.streaming.streaming_runner(wsgi_callback(app, {}))(protocol, {'PATH_INFO': '/'})
    assert protocol.done.wait(5)
    sent_kind, status, _, thread = protocol.sent[0]
    assert (sent_kind, status) == (kind, 200)
    assert (thread is not threading.current_thread()) is own_thread


def test_a_streamed_answer_with_no_thread_to_be_had_goes_from_the_pool_thread(monkeypatch):
    """Where no thread can start (a pids limit), the answer is still sent, from this thread."""
    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, 'start', refuse)
    protocol = Protocol()

    def app(environ, start):
        start('200 OK', [])
        return serving.streaming.Streamed([b'streamed'])

    serving.streaming.streaming_runner(wsgi_callback(app, {}))(protocol, {'PATH_INFO': '/'})
    assert protocol.sent[0][::2] == ('iter', b'streamed')
    assert protocol.sent[0][3] is threading.current_thread()


def test_an_answer_whose_body_read_is_pending_is_cut_short_with_a_408():
    """A handler that swallowed its 408: the answer is our 408, one byte short, then it ends."""
    silent = Silent()

    def app(environ, start):
        with pytest.raises(cherrypy.HTTPError):
            environ['wsgi.input'].read()
        start('200 OK', [('Content-Length', '2')])
        return [b'ok']

    environ = dict(plain_environ(), **{'wsgi.input': silent})
    guard = serving.guard.Guard(app, multiprocessing.RawValue('b'), landing.HEADERS,
                                body_timeout=0.1)
    started = []
    try:
        answer = guard(environ, lambda status, headers, exc_info=None: started.append(
            (status, dict(headers))))
        body = b''.join(answer)
    finally:
        silent.release.set()
    status, headers = started[-1]
    assert status == '408 Request Timeout'
    assert headers['Connection'] == 'close'
    assert int(headers['Content-Length']) == len(body) + 1


@pytest.mark.parametrize('query', [
    'utm_source=newsletter&utm_medium=email', 'fbclid=IwAR0abc', 'gclid=Cj0KCQ', 'a=1&a=2',
    'ts=1', '%ZZ', 'x',
])
@pytest.mark.parametrize('path', ['/', '/healthcheck', '/healthcheck/'])
def test_query_parameters_a_handler_does_not_take_are_ignored(in_process, path, query):
    """Ad and social links carry parameters the page never uses: still 200, never 404."""
    assert in_process('GET', f'{path}?{query}')[0] == 200


def test_parameters_a_handler_takes_still_reach_it(in_process):
    """The filter drops only what the handler cannot take; a handler with **kwargs gets all."""
    def takes(name=None):
        return name

    def takes_all(**kwargs):
        return kwargs

    assert serving.handlers._accepted_params(takes) == frozenset({'name'})
    assert serving.handlers._accepted_params(takes_all) is None
    assert serving.handlers._accepted_params(min) is None  # a builtin with no signature: leave all


def test_unknown_paths_with_queries_are_still_404(in_process):
    """Ignoring parameters never turns a wrong path into a page."""
    assert in_process('GET', '/no-such-page?utm_source=x')[0] == 404


class Unhashable:
    """A callable handler whose class defines __eq__ and so is not hashable."""

    __hash__ = None

    def __call__(self, keep=None):
        """Take one parameter."""
        return keep


@pytest.mark.parametrize('handler, kept', [
    (lambda keep=None: keep, {'keep'}),
    (lambda **every: every, {'keep', 'drop'}),
    (Unhashable(), {'keep'}),
])
def test_the_filter_keeps_what_each_kind_of_handler_takes(handler, kept):
    """Plain, **kwargs and unhashable handlers: the parameters they take stay, others go."""
    request = cherrypy._cprequest.Request(None, None)
    request.params = {'keep': '1', 'drop': '2'}
    request.handler = cherrypy._cpdispatch.PageHandler(handler)
    cherrypy.serving.load(request, cherrypy._cprequest.Response())
    try:
        serving.handlers.ignore_unused_params()
        assert set(request.params) == kept
    finally:
        cherrypy.serving.clear()


@pytest.mark.parametrize('query', ['a=%FF%FE', 'a=%ff&b=2', 'x=%C3%A9%FF', '\u00e9=1'])
def test_a_query_string_that_is_not_utf8_still_gets_the_page(in_process, query):
    """CherryPy answers 404 to undecodable parameters; the guard replaces the bad bytes."""
    assert in_process('GET', f'/?{query}')[0] == 200


def test_a_host_longer_than_any_name_is_refused(in_process):
    """An 8 KB Host is no host: 400, like any other invalid one."""
    assert in_process('GET', '/', {'Host': 'a' * 8000})[0] == 400
    assert in_process('GET', '/', {'Host': 'a' * 253 + ':65535'})[0] == 200


@pytest.mark.parametrize('answer, expected', [
    ('café', b'caf\xc3\xa9'),
    (b'bytes as they are', b'bytes as they are'),
    (None, None),
])
def test_a_handler_may_return_str_bytes_or_nothing(answer, expected):
    """A str answer is sent as UTF-8, bytes as they are, None as an empty body."""
    cherrypy.serving.load(cherrypy._cprequest.Request(None, None), cherrypy._cprequest.Response())
    try:
        assert serving.handlers.Utf8Handler(lambda: answer)() == expected
    finally:
        cherrypy.serving.clear()


def test_a_handler_may_yield_str_and_bytes_and_gets_the_charset_named():
    """A generator's str chunks are encoded one by one; the text type gets its charset."""
    cherrypy.serving.load(cherrypy._cprequest.Request(None, None), cherrypy._cprequest.Response())
    try:
        cherrypy.serving.response.headers['Content-Type'] = 'text/plain'
        chunks = serving.handlers.Utf8Handler(lambda: (part for part in ('é', b'!')))()
        assert list(chunks) == [b'\xc3\xa9', b'!']
        assert cherrypy.serving.response.headers['Content-Type'] == 'text/plain; charset=utf-8'
    finally:
        cherrypy.serving.clear()


# ------------------------------------------------------------------ issue 17: costs and errors


@pytest.mark.parametrize('name', [
    'Accept', 'Accept-Language', 'Accept-Encoding', 'Accept-Charset', 'Content-Type', 'TE',
    'If-None-Match', 'If-Match', 'Content-Disposition',
])
def test_headers_cherrypy_splits_with_quadratic_regexes_get_431_past_the_cap(in_process, name):
    """A value CherryPy would split for a second of CPU is refused; an ordinary one passes."""
    value = ',"' * serving.refusals.MAX_ELEMENT_HEADER
    assert in_process('GET', '/healthcheck', {name: value})[0] == 431
    assert in_process('GET', '/healthcheck', {name: 'a, b;q=0.5'})[0] == 200


def test_a_cookie_of_many_backslashes_gets_431_and_a_few_pass(in_process):
    """CVE-2024-7592: Python's cookie parser is quadratic in backslashes on older 3.11s."""
    many = 'a="' + '\\' * (serving.refusals.MAX_COOKIE_BACKSLASHES + 1) + '"'
    assert in_process('GET', '/healthcheck', {'Cookie': many})[0] == 431
    assert in_process('GET', '/healthcheck', {'Cookie': 'a="\\\\"; b=c'})[0] == 200


@pytest.mark.parametrize('value, readable', [
    ('plain', True), ('=?utf-8?q?f=C3=BCr?=', True), ('https://x/?next=?a', True),
    ('=?x?q?a?=', False), ('a =?utf-8?q?b?=', False), ('=?utf-16?q?a?=', False),
    ('=?utf-8?q?=FF?=', False), ('=?a?q?' * (serving.refusals.MAX_ENCODED_WORDS + 1), False),
])
def test_encoded_words_cherrypy_cannot_decode_are_refused(value, readable):
    """Unknown charsets, bad base64, mixed atoms and floods of words: not readable."""
    assert serving.refusals.decodable(value) is readable


@pytest.mark.parametrize('path', ['/healthcheck', '/', '/logo.png', '/nope'])
def test_an_undecodable_header_gets_400_with_our_page_not_a_traceback(in_process, path):
    """CherryPy decodes RFC 2047 words before its config applies: the guard refuses first."""
    status, headers, body = in_process('GET', path, {'User-Agent': '=?x?q?a?='})
    assert status == 400
    assert set(headers) >= SECURITY_HEADERS
    assert body == serving.request.short_page('400 Bad Request').encode()


@pytest.mark.parametrize('cookie', ['[a=b', 'a="\\x'])
def test_a_broken_cookie_before_the_config_gets_our_page_without_a_traceback(in_process, cookie):
    """CookieError is raised while headers are read: GuardedRequest shows no traceback."""
    status, headers, body = in_process('GET', '/healthcheck', {'Cookie': cookie})
    assert status in (200, 400)
    assert b'Traceback' not in body
    assert b'CherryPy' not in body
    assert set(headers) >= SECURITY_HEADERS


def guard_over(app):
    """The guard around a WSGI `app`; returns a function calling it (status, headers, body)."""
    guard = serving.guard.Guard(app, multiprocessing.RawValue('b'), landing.HEADERS)

    def call(environ=None):
        started = []
        body = b''.join(guard(environ or plain_environ(), lambda status, headers,
                              exc_info=None: started.append((status, headers))))
        return started[-1][0], dict(started[-1][1]), body
    return call


@pytest.mark.parametrize('error', [SystemExit, KeyboardInterrupt, GeneratorExit, RuntimeError])
def test_whatever_the_app_raises_the_client_gets_our_500_page(error):
    """BaseExceptions from a handler pass CherryPy's traps; the guard answers our page."""
    def app(environ, start):
        raise error('from a handler')

    status, headers, body = guard_over(app)()
    assert status == serving.request.SERVER_ERROR
    assert body == serving.request.short_page(serving.request.SERVER_ERROR).encode()
    assert set(headers) >= SECURITY_HEADERS


def test_a_500_the_app_writes_itself_becomes_our_page():
    """CherryPy's bare error path writes text/plain with no page: the guard's replaces it."""
    closed = []

    class Answer(list):
        def close(self):
            closed.append(True)

    def app(environ, start):
        start('500 Internal Server Error', [('Content-Type', 'text/plain')])
        return Answer([b'Unrecoverable error in the server.'])

    status, headers, body = guard_over(app)()
    assert (status, closed) == (serving.request.SERVER_ERROR, [True])
    assert body == serving.request.short_page(serving.request.SERVER_ERROR).encode()
    assert headers['Content-Type'] == 'text/html; charset=utf-8'


def test_an_app_that_starts_its_answer_late_still_gets_the_headers():
    """An app may call start_response while its body is iterated: passed straight on."""
    def app(environ, start):
        def body():
            start('200 OK', [('Content-Length', '2')])
            yield b'ok'
        return body()

    assert guard_over(app)()[0] == '200 OK'


def deadline_input(data, timeout=5, limit=100):
    """A DeadlineInput over `data` (bytes, or a reader object)."""
    raw = io.BytesIO(data) if isinstance(data, bytes) else data
    return serving.bodies.DeadlineInput(raw, limit, timeout)


def test_a_body_is_read_whole_once_and_served_from_memory():
    """read, readline, readlines and iteration all see the same body."""
    body = b'a=1\nb=2\n'
    assert deadline_input(body).read() == body
    assert deadline_input(body).read(None) == body
    assert deadline_input(body).readline() == b'a=1\n'
    assert deadline_input(body).readlines() == [b'a=1\n', b'b=2\n']
    assert list(deadline_input(body)) == [b'a=1\n', b'b=2\n']
    reader = deadline_input(body)
    assert (reader.read(2), reader.read()) == (b'a=', b'1\nb=2\n')


def test_a_body_past_the_cap_is_read_one_byte_past_it_so_cherrypy_says_413():
    """The reader stops at limit + 1 bytes: CherryPy's maxbytes sees the excess."""
    assert len(deadline_input(b'x' * 500, limit=100).read()) == 101


class Silent:
    """A wsgi.input whose client never sends: read() blocks until released."""

    def __init__(self):
        self.release = threading.Event()

    def read(self, size):
        """Wait for the release, then fail as a reset connection does."""
        self.release.wait(30)
        raise ConnectionResetError('the connection closed')


def test_a_body_that_does_not_arrive_in_time_gets_408():
    """The worker thread waits BODY_TIMEOUT at most; the read goes on in its own thread."""
    silent = Silent()
    try:
        with pytest.raises(cherrypy.HTTPError) as raised:
            deadline_input(silent, timeout=0.2).read()
        assert raised.value.status == 408
    finally:
        silent.release.set()


def test_past_the_cap_of_threads_waiting_for_bodies_an_upload_gets_503_at_once():
    """With every allowed waiter taken, a read answers 503 without waiting; after, it reads."""
    waiting = threading.BoundedSemaphore(1)
    waiting.acquire()
    body = serving.bodies.DeadlineInput(io.BytesIO(b'a=1'), 100, 5, waiting=waiting)
    with pytest.raises(cherrypy.HTTPError) as raised:
        body.read()
    assert raised.value.status == 503
    waiting.release()
    assert body.read() == b'a=1'
    assert waiting.acquire(blocking=False)  # the read gave its place back


def test_a_reset_while_reading_leaves_what_came():
    """A connection reset ends the body; the handler gets what arrived."""
    silent = Silent()
    silent.release.set()
    assert deadline_input(silent).read() == b''


def test_a_408_is_our_page_and_closes_the_connection():
    """After a body deadline the rest of the body is unread: the answer says close."""
    def app(environ, start):
        start('408 Request Timeout', [('Content-Type', 'text/html')])
        return [b'x']

    status, headers, body = guard_over(app)()
    assert status == '408 Request Timeout'
    assert headers['Connection'] == 'close'


@pytest.mark.parametrize('branch, allowed', [
    ('site.css', True), ('', True), ('.env', False), ('a/.git/config', False),
    ('a\\.env', False), ('../landing.py', False), ('a\x00b', False),
])
def test_static_paths_name_no_dot_entry_and_stay_inside(branch, allowed):
    """Dot entries at any depth, either slash, and real paths out of the folder are refused."""
    assert serving.static.static_allowed(os.path.join(ROOT, 'static'), branch) is allowed


def test_a_symlink_out_of_the_folder_is_refused_and_one_inside_served(tmp_path):
    """The real path decides: a link to ../secret is out, a link to a sibling is in."""
    (tmp_path / 'static').mkdir()
    (tmp_path / 'secret').write_text('x')
    (tmp_path / 'static' / 'file').write_text('y')
    (tmp_path / 'static' / 'out').symlink_to('../secret')
    (tmp_path / 'static' / 'in').symlink_to('file')
    folder = str(tmp_path / 'static')
    assert not serving.static.static_allowed(folder, 'out')
    assert serving.static.static_allowed(folder, 'in')


@pytest.mark.parametrize('path', ['/static/.hidden', '/static/%252ehidden', '/static/sub/.x'])
def test_dot_entries_under_static_are_404_in_process(in_process, path):
    """static_only runs before staticdir: 404 whether or not the file exists."""
    assert in_process('GET', path)[0] == 404


@pytest.mark.parametrize('section, path, branch', [
    ('global', '/site.css', 'site.css'), ('global', '/.env', '.env'), ('/', '/a/b.css', 'a/b.css'),
    ('/static', '/static/site.css', 'site.css'), ('/static/', '/static//a.css', 'a.css'),
])
def test_a_staticdir_branch_is_cut_as_cherrypy_cuts_it(section, path, branch):
    """A staticdir in the global config ('global') serves from the site's root, as CherryPy's."""
    settings = {'dir': 'static', 'root': ROOT, 'section': section}
    assert serving.static.staticdir_target(settings, path) == (
        os.path.join(ROOT, 'static'), branch)


@pytest.mark.parametrize('path', ['/.hidden', '/sub/.x', '/%2ehidden'])
def test_dot_entries_under_a_global_staticdir_are_404(tmp_path, path):
    """tools.staticdir in the global config refuses dot entries as a section's does."""
    request = cherrypy._cprequest.Request(None, None)
    request.toolmaps = {'tools': {'staticdir': {
        'on': True, 'root': str(tmp_path), 'dir': 'static', 'section': 'global'}}}
    request.path_info = path
    cherrypy.serving.load(request, cherrypy._cprequest.Response())
    try:
        with pytest.raises(cherrypy.NotFound):
            serving.static.static_only()
    finally:
        cherrypy.serving.clear()


def test_a_configured_static_file_that_is_a_symlink_out_is_404(tmp_path):
    """tools.staticfile is held to its own folder too."""
    (tmp_path / 'secret.py').write_text('import os\n')
    (tmp_path / 'static').mkdir()
    (tmp_path / 'static' / 'logo.png').symlink_to('../secret.py')
    request = cherrypy._cprequest.Request(None, None)
    request.toolmaps = {'tools': {'staticfile': {
        'on': True, 'root': str(tmp_path), 'filename': 'static/logo.png'}}}
    request.path_info = '/logo.png'
    cherrypy.serving.load(request, cherrypy._cprequest.Response())
    try:
        with pytest.raises(cherrypy.NotFound):
            serving.static.static_only()
    finally:
        cherrypy.serving.clear()


@pytest.mark.parametrize('toolmap, handler, read', [
    ({}, None, False),
    ({}, cherrypy.NotFound(), False),
    ({'staticdir': {'on': True}}, lambda: None, False),
    ({'staticfile': {'on': True}}, lambda: None, False),
    ({'staticdir': {'on': False}}, lambda: None, True),
    ({'session_auth': {'on': True}}, cherrypy.NotFound(), True),
    ({'session_auth': {'on': False}}, cherrypy.NotFound(), False),
    ({'trailing_slash': {'on': True}}, cherrypy.NotFound(), False),
    ({'session_auth': {'on': True}, 'staticdir': {'on': True}}, lambda: None, False),
])
def test_a_body_is_read_only_where_a_handler_can_take_it(toolmap, handler, read):
    """No handler (404) or a static file: CherryPy is told not to read the body.

    Unless a tool that may answer in the handler's place is on (session_auth's do_login).
    """
    request = cherrypy._cprequest.Request(None, None)
    request.toolmaps = {'tools': toolmap}
    request.handler = handler
    request.process_request_body = True
    cherrypy.serving.load(request, cherrypy._cprequest.Response())
    try:
        serving.bodies.takes_body()
        assert request.process_request_body is read
    finally:
        cherrypy.serving.clear()


def multipart(parts, boundary='b0'):
    """A multipart/form-data body of `parts` tiny fields, with its Content-Type."""
    body = b''.join(b'--%s\r\nContent-Disposition: form-data; name="f%d"\r\n\r\na\r\n'
                    % (boundary.encode(), n) for n in range(parts))
    return body + b'--%s--\r\n' % boundary.encode(), f'multipart/form-data; boundary={boundary}'


@pytest.mark.parametrize('parts, refused', [
    (serving.bodies.MAX_PARTS, False), (serving.bodies.MAX_PARTS + 1, True)])
def test_a_multipart_body_of_too_many_parts_gets_413_before_cherrypy_parses_it(parts, refused):
    """CherryPy's multipart parser costs ~0.15 ms a part: past MAX_PARTS, 413."""
    body, content_type = multipart(parts)
    reader = serving.bodies.DeadlineInput(io.BytesIO(body), 100_000, 5, content_type)
    if refused:
        with pytest.raises(cherrypy.HTTPError) as raised:
            reader.read()
        assert raised.value.status == 413
    else:
        assert reader.read() == body


@pytest.mark.parametrize('content_type', [
    '', 'application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain; boundary=b0'])
def test_only_a_multipart_body_with_a_boundary_is_counted(content_type):
    """Other bodies (and a multipart type naming no boundary) are passed on whatever they hold."""
    body, _ = multipart(serving.bodies.MAX_PARTS * 2)
    assert serving.bodies.DeadlineInput(io.BytesIO(body), 100_000, 5, content_type).read() == body


def test_a_handler_may_set_its_own_policy_header_for_its_page(start_server):
    """A page's own CSP replaces the policy's for that page only; Server is always ours."""
    app = start_server(script=SLOW_APP).wait_ready()
    _, own, _ = request(app.port, 'GET', '/own_policy')
    assert own.get_all('Content-Security-Policy') == [slow_landing.OWN_POLICY]
    for name, value in OUR_HEADERS:
        if name != 'Content-Security-Policy':
            assert own.get_all(name) == [value]
    _, page, _ = request(app.port, 'GET', '/')
    assert page.get_all('Content-Security-Policy') == [dict(OUR_HEADERS)['Content-Security-Policy']]
