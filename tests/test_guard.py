"""The guard in front of CherryPy: what it refuses, what it mends, what it adds to every answer.

Called in this process through the same WSGI app granian serves (the `in_process` fixture), so
each rule is seen on its own; test_hostile.py sends the same shapes to a real server.
"""
import gc
import io
import multiprocessing
import os

import cherrypy
import pytest

import server
from conftest import ROOT
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
SECURITY_HEADERS = {name for name, _ in server.RESPONSE_HEADERS}


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
    assert b'<title>Landing</title>' in body


@pytest.mark.parametrize('path', [
    '/' + 'a' * (server.MAX_TARGET + 1),
    '/a' * (server.MAX_SEGMENTS + 1),
    '/?' + 'q' * server.MAX_TARGET,
])
def test_long_or_deep_targets_get_414_before_dispatch(in_process, path):
    """CherryPy's dispatch cost grows with the path: past the caps the answer is 414."""
    assert in_process('GET', path)[0] == 414


def test_a_declared_body_over_the_cap_gets_413_before_anything_reads_it():
    """Content-Length over server.max_request_body_size: 413, the app never called."""
    called = []
    guard = server.Guard(lambda environ, start: called.append(1), multiprocessing.RawValue('b'), 10)
    answers = []
    body = guard({'HTTP_HOST': 'x', 'SERVER_PROTOCOL': 'HTTP/1.1', 'PATH_INFO': '/',
                  'CONTENT_LENGTH': '11'}, lambda status, headers: answers.append(status))
    assert answers == ['413 Content Too Large']
    assert called == []
    assert b'413' in b''.join(body)


@pytest.mark.parametrize('size, status', [(1000, 200), (server.DEFAULTS[
    'server.max_request_body_size'] + 1, 413)])
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
    assert dict(server.RESPONSE_HEADERS).items() <= headers.items()


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

    guard = server.Guard(app, multiprocessing.RawValue('b'))
    answer = guard(plain_environ(), lambda *args: None)
    assert answer == [b'ab']
    assert closed == [True]


@pytest.mark.parametrize('length', [None, str(server.ONE_PIECE + 1), 'x'])
def test_big_or_unsized_answers_stream_as_they_are(length):
    """Past ONE_PIECE, or with no Content-Length, the app's iterable goes out unchanged."""
    body = iter([b'chunk'])

    def app(environ, start):
        start('200 OK', [] if length is None else [('Content-Length', length)])
        return body

    guard = server.Guard(app, multiprocessing.RawValue('b'))
    assert guard(plain_environ(), lambda *args: None) is body


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

    assert server._accepted_params(takes) == frozenset({'name'})
    assert server._accepted_params(takes_all) is None
    assert server._accepted_params(min) is None  # a builtin with no signature: leave all


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
        server.ignore_unused_params()
        assert set(request.params) == kept
    finally:
        cherrypy.serving.clear()


@pytest.mark.parametrize('query', ['a=%FF%FE', 'a=%ff&b=2', 'x=%C3%A9%FF', '\u00e9=1'])
def test_a_query_string_that_is_not_utf8_still_gets_the_page(in_process, query):
    """CherryPy answers 404 to undecodable parameters; the guard replaces the bad bytes."""
    assert in_process('GET', f'/?{query}')[0] == 200


def test_valid_parameters_survive_the_mend():
    """Only the undecodable bytes change: the valid parameters keep their values."""
    environ = {'SERVER_PROTOCOL': 'HTTP/1.1', 'QUERY_STRING': 'a=%FF&b=caf%C3%A9'}
    server.tidy(environ)
    assert environ['QUERY_STRING'] == 'a=%EF%BF%BD&b=caf%C3%A9'


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
        assert server.Utf8Handler(lambda: answer)() == expected
    finally:
        cherrypy.serving.clear()


def test_a_handler_may_yield_str_and_bytes_and_gets_the_charset_named():
    """A generator's str chunks are encoded one by one; the text type gets its charset."""
    cherrypy.serving.load(cherrypy._cprequest.Request(None, None), cherrypy._cprequest.Response())
    try:
        cherrypy.serving.response.headers['Content-Type'] = 'text/plain'
        chunks = server.Utf8Handler(lambda: (part for part in ('é', b'!')))()
        assert list(chunks) == [b'\xc3\xa9', b'!']
        assert cherrypy.serving.response.headers['Content-Type'] == 'text/plain; charset=utf-8'
    finally:
        cherrypy.serving.clear()
