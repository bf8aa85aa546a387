"""A CherryPy app keeps CherryPy's semantics through the stack, against a real server process.

tests/cherrypy_app.py serves the landing app with handlers written as CherryPy's docs show.
Each test is one item of docs/cherrypy.md: fixed in serving/, or, where granian decides,
pinned as it is (the tests named `..._as_granian_does`), so a granian release that changes it
is noticed.
"""
import io
import os
import sys
import urllib.parse

import cherrypy
import pytest

import serving.guard
import serving.health
import serving.request
from cherrypy_stack import serve_in_thread
from conftest import ROOT, free_port, request, wait_until
from rawhttp import CRLF, connect, exchange, get, read_response

APP = os.path.join(ROOT, 'tests', 'cherrypy_app.py')
# Chunks of 64 KiB in the app's /extras/download (its PULLS).
PULLS = 1024
# CherryPy's message for an unexpected error, which its error page shows.
UNEXPECTED = ('The server encountered an unexpected condition which prevented it from '
              'fulfilling the request.')


@pytest.fixture(scope='module')
def app(tmp_path_factory):
    """tests/cherrypy_app.py as a real process, with a secret and a proxy in its environment."""
    from conftest import ServerProcess
    served = ServerProcess(tmp_path_factory.mktemp('semantics'), script=APP, env={
        'SECRET_TOKEN': 'do-not-leak', 'HTTP_PROXY': 'http://proxy.invalid:3128'})
    try:
        yield served.wait_ready()
    finally:
        served.kill()


def body_of(app, path, **kwargs):
    """GET `path`; return (status, body as text)."""
    status, _, body = request(app.port, kwargs.pop('method', 'GET'), path, **kwargs)
    return status, body.decode('utf-8')


def test_a_grafted_wsgi_app_starts_and_is_served(app):
    """Item 1: `cherrypy.tree.graft` beside the app no longer stops the server at start."""
    assert body_of(app, '/legacy/x') == (200, 'legacy /x')
    assert request(app.port, 'GET', '/')[0] == 200


def test_a_handlers_wrong_content_length_never_frames_the_connection(app):
    """Item 2: 'café' with Content-Length 4 goes out as its 5 bytes, the next answer intact."""
    with connect(app.port) as sock:
        sock.sendall(get('/extras/cafe') + get('/healthcheck'))
        first = read_response(sock)
        second = read_response(sock)
    assert (first.status, first.headers['content-length'], first.body) == \
        (200, '5', 'café'.encode())
    assert (second.status, second.body) == (200, b'Yay')


def test_a_streamed_answer_keeps_its_handlers_content_length(app):
    """A stream with its own Content-Length goes out under it, as the encode tool leaves it."""
    raw = exchange(app.port, get('/extras/counted') + get('/healthcheck'))
    head, _, rest = raw.partition(CRLF * 2)
    assert head.startswith(b'HTTP/1.1 200')
    assert b'content-length: 10' in head.lower()
    assert b'transfer-encoding' not in head.lower()
    # The next answer on the connection starts right after the ten bytes.
    assert rest.startswith(b'0123456789HTTP/1.1 200')


def test_a_stream_past_its_own_content_length_never_frames_the_connection_wrong(app):
    """Longer than it declares: cut at the length; shorter: the connection closes short."""
    raw = exchange(app.port, get('/extras/counted?text=0123456789ab') + get('/healthcheck'))
    assert raw.partition(CRLF * 2)[2].startswith(b'0123456789HTTP/1.1 200')
    raw = exchange(app.port, get('/extras/counted?text=01234567') + get('/healthcheck'))
    head, _, rest = raw.partition(CRLF * 2)
    # Closed, with no second answer; hyper may drop what it had not written yet, head included.
    assert raw == b'' or head.startswith(b'HTTP/1.1 200') and b'01234567'.startswith(rest)


def test_a_str_answer_of_a_non_text_type_is_utf_8_under_the_type_as_set(app):
    """Only text/* gets `; charset=`, as with CherryPy's encode tool; the str is UTF-8."""
    status, headers, body = request(app.port, 'GET', '/extras/typed')
    assert (status, headers['Content-Type']) == (200, 'application/json')
    assert body == '{"name": "café"}'.encode()


def test_an_http_1_0_keep_alive_answer_says_keep_alive_as_cheroot_spells_it(app):
    """An HTTP/1.0 client asking keep-alive gets `Connection: Keep-Alive` and an open line."""
    ask = b'GET /healthcheck HTTP/1.0\r\nHost: localhost\r\nConnection: Keep-Alive\r\n\r\n'
    with connect(app.port) as sock:
        for _ in range(2):  # the second on the same connection
            sock.sendall(ask)
            answer = read_response(sock)
            assert (answer.status, answer.headers['connection'], answer.body) == \
                (200, 'Keep-Alive', b'Yay')
    # A refusal closes, and says only that.
    raw = exchange(app.port, ask.replace(b'\r\n\r\n', b'\r\nContent-Length: 99999999\r\n\r\n'))
    assert raw.startswith(b'HTTP/1.0 413')
    assert raw.lower().count(b'connection:') == 1
    assert b'connection: close' in raw.lower()
    # Without asking, the HTTP/1.0 answer names no Connection, and the server closes.
    raw = exchange(app.port, b'GET /healthcheck HTTP/1.0\r\nHost: localhost\r\n\r\n')
    assert b'onnection' not in raw
    assert raw.endswith(b'Yay')


def test_a_files_answer_is_read_as_it_goes_not_whole_first(app):
    """A handler's file-like answer (not text/*, not streamed) keeps its Content-Length.

    CherryPy then sends it as it reads it; without its length, finalize() would read all of
    it into memory before the first byte went out (64 MiB here, per request).
    """
    with connect(app.port) as sock:
        sock.sendall(get('/extras/download'))
        head = sock.recv(1024).partition(CRLF * 2)[0]
        assert head.startswith(b'HTTP/1.1 200')
        assert f'content-length: {PULLS * 65536}'.encode() in head
        # The reader has read nothing past the head: the rest waits in buffers, unread.
        assert int(body_of(app, '/extras/pulled')[1]) < PULLS


def test_an_http_errors_message_is_on_the_page_escaped_with_a_charset(app):
    """Item 3: HTTPError(403, message) shows the message; the page names its charset."""
    status, headers, body = request(app.port, 'GET', '/extras/forbidden')
    assert status == 403
    assert b'You must log in first &lt;now&gt;' in body
    assert headers['Content-Type'] == 'text/html; charset=utf-8'
    assert b'Traceback' not in body
    assert b'CherryPy' not in body


@pytest.mark.parametrize('path', ['/extras/broken', '/extras/loud'])
def test_a_failing_handlers_500_page_shows_cherrypys_message_and_no_traceback(app, path):
    """In production the project's 500 page keeps CherryPy's message (test10HTTPErrors).

    No traceback and no version, even from a handler that turns tracebacks on.
    """
    status, headers, body = request(app.port, 'GET', path)
    assert status == 500
    assert body == serving.request.short_page(serving.request.SERVER_ERROR, UNEXPECTED).encode()
    assert headers['Content-Type'] == 'text/html; charset=utf-8'


def test_an_http_500s_own_message_is_on_the_page_escaped(app):
    """HTTPError(500, message) shows the app's message, as a 403 does (test10HTTPErrors)."""
    status, _, body = request(app.port, 'GET', '/extras/unavailable')
    assert status == 500
    assert body == serving.request.short_page(
        serving.request.SERVER_ERROR, 'The catalogue is &lt;b&gt;down&lt;/b&gt;').encode()


def test_where_tracebacks_show_the_error_page_is_cherrypys_with_or_without_one(start_server):
    """An environment that shows tracebacks (CherryPy's test_suite): CherryPy's error page.

    A handler that turns tracebacks off gets CherryPy's page without one, as on cheroot
    (testErrorHandling, testHookErrors).
    """
    served = start_server(env={'TRACEBACKS': '1'}, script=APP).wait_ready()
    status, _, body = request(served.port, 'GET', '/extras/broken')
    assert status == 500
    assert b'RuntimeError: a detail for the log only' in body
    powered = f'Powered by <a href="http://www.cherrypy.dev">CherryPy {cherrypy.__version__}'
    assert powered.encode() in body
    status, _, body = request(served.port, 'GET', '/extras/quiet')
    assert (status, body.decode()) == (500, cherrypy._cperror._HTTPErrorTemplate % {
        'status': serving.request.SERVER_ERROR, 'message': UNEXPECTED, 'traceback': '',
        'version': cherrypy.__version__})


def test_session_auths_own_login_path_reads_the_form(app):
    """session_auth answers /do_login, where dispatch finds no handler: the form is read.

    (CherryPy's testSessionAuthenticate.) Right credentials redirect to the page asked for;
    wrong ones get the form again, saying why.
    """
    form = {'Content-Type': 'application/x-www-form-urlencoded'}
    status, headers, _ = request(app.port, 'POST', '/members/do_login', headers=form,
                                 body='username=ann&password=secret&from_page=/members/')
    assert status == 303
    assert headers['Location'].endswith('/members/')
    status, _, body = request(app.port, 'POST', '/members/do_login', headers=form,
                              body='username=ann&password=guess&from_page=/members/')
    assert status == 200
    assert b'Wrong login or password' in body


def test_a_post_to_a_missing_page_beside_session_auth_still_gets_404(app):
    """With session_auth on (testSessionAuthenticate), a path nothing answers is still 404."""
    form = {'Content-Type': 'application/x-www-form-urlencoded'}
    assert request(app.port, 'POST', '/nowhere', headers=form, body='a=b')[0] == 404


def test_max_request_body_size_0_means_no_limit(start_server):
    """Item 4: CherryPy's `server.max_request_body_size: 0` takes bodies of any size."""
    served = start_server(env={'NO_BODY_CAP': '1'}, script=APP).wait_ready()
    big = b'x' * (200 * 1024)
    status, _, body = request(served.port, 'POST', '/extras/upload', body=big)
    assert (status, body) == (200, str(len(big)).encode())


def test_the_default_cap_still_refuses_a_big_body(app):
    """Item 4's other side: without the setting, the 64 KiB cap stays."""
    assert request(app.port, 'POST', '/extras/upload', body=b'x' * (65 * 1024))[0] == 413


def test_the_query_is_read_in_the_apps_encoding(app):
    """Item 5: with `request.query_string_encoding: 'latin1'`, %E8 is è."""
    assert body_of(app, '/extras/latin?name=Gruy%E8re') == (200, repr('Gruyère'))


def test_a_bad_byte_in_the_query_changes_no_other_parameter(app):
    """Item 5: encoded +, & and = stay data when another parameter holds invalid UTF-8."""
    status, body = body_of(app, '/extras/echo?name=1%2B1%26b%3Dc&junk=%FF')
    assert (status, body) == (200, repr(('1+1&b=c', None)))
    assert body_of(app, '/extras/echo?name=caf%E9')[1] == repr(('caf\ufffd', None))


def test_an_unexpected_body_field_gets_cherrypys_400(app):
    """Item 6: only query parameters are dropped; a body field the handler lacks is a 400."""
    form = urllib.parse.urlencode({'name': 'a', 'extra': 'b'})
    headers = {'Content-Type': 'application/x-www-form-urlencoded'}
    assert request(app.port, 'POST', '/extras/form', body=form, headers=headers)[0] == 400
    status, _, body = request(app.port, 'POST', '/extras/form?utm_source=x',
                              body='name=a', headers=headers)
    assert (status, body) == (200, b"'a'")


def test_a_handler_wrapped_by_a_tool_keeps_its_parameters(app):
    """Item 6: a tool's wrapper in place of the handler: the parameters still reach it."""
    assert body_of(app, '/extras/tooled?name=kept') == (200, repr('kept'))


def test_the_environ_holds_no_process_variable(app):
    """Item 9: no SECRET_TOKEN, no HTTP_PROXY read as a Proxy header, PATH and HOME neither."""
    status, body = body_of(app, '/extras/environ')
    assert status == 200
    keys, proxy = eval(body)  # noqa: S307  (our own repr of a list of str and a None)
    assert proxy is None
    assert not {'SECRET_TOKEN', 'HTTP_PROXY', 'PATH', 'HOME'} & set(keys)
    assert {'REQUEST_METHOD', 'PATH_INFO', 'wsgi.input', 'SERVER_PROTOCOL'} <= set(keys)


def test_a_real_proxy_header_still_arrives(app):
    """Item 9's other side: a Proxy header the client sends is the request's own."""
    with connect(app.port) as sock:
        sock.sendall(get('/extras/environ', b'Proxy: sent'))
        assert read_response(sock).body.endswith(b", 'sent')")


def test_a_non_ascii_cookie_empties_the_header_as_granian_does_and_is_logged(app):
    """Item 7 (granian #335): the whole Cookie header arrives empty; the server says so."""
    raw = exchange(app.port, get('/extras/cookie', 'Cookie: name=café; session_id=1'.encode()))
    assert raw.split(CRLF * 2, 1)[1] == b"''<OPEN>"
    wait_until(lambda: 'a Cookie header arrived empty: sent so, or granian blanked' in
               app.stderr(), what='the warning')


def test_an_answer_failing_before_its_first_byte_is_a_500(app):
    """Item 8: a streamed answer that raises before its first chunk is the project's 500."""
    status, _, body = request(app.port, 'GET', '/extras/fails_first')
    assert status == 500
    assert b'failed before' not in body


def test_a_sized_answer_failing_midway_is_cut_short():
    """Item 8: over ONE_PIECE, with a Content-Length, the client sees fewer bytes and a close.

    (A handler's own Content-Length on a generator is dropped, as CherryPy's encode tool
    drops it: such answers are big static files. The guard over granian's worker, in a
    thread, with an answer just over the one-piece size.)
    """
    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', str(serving.guard.ONE_PIECE + 1))])

        def chunks():
            yield b'first chunk '
            raise RuntimeError('failed midway')
        return chunks()

    port = free_port()
    halt = serve_in_thread(serving.guard.Guard(app, serving.health.draining), '127.0.0.1', port,
                           idle_timeout=10)
    try:
        raw = exchange(port, get('/'))
    finally:
        halt()
    head, _, body = raw.partition(CRLF * 2)
    # Closed short of the length: the answer is pulled by a thread of its own (Streamed), and
    # hyper may close before it wrote even the head, or drop the chunk it had not written yet.
    assert head == b'' or f'content-length: {serving.guard.ONE_PIECE + 1}'.encode() in head
    assert body in (b'', b'first chunk ')


def test_a_chunked_answer_failing_midway_ends_cleanly_as_granian_does(app):
    """Item 8, left: granian ends a chunked answer whose iterator raised with its last chunk.

    The client cannot tell it from a complete answer; the error text is no longer in it.
    """
    raw = exchange(app.port, get('/extras/fails_midway'))
    assert raw.startswith(b'HTTP/1.1 200')
    assert raw.endswith(b'first chunk \r\n0\r\n\r\n<OPEN>')
    assert b'Unrecoverable' not in raw


def test_a_gzipped_stream_failing_before_its_own_first_chunk_ends_cleanly_as_granian_does(app):
    """Item 8, left (testGzip): gzip's header is the first chunk, so the answer has started.

    cheroot sends the same start and header, then cuts the chunked body; granian ends it.
    """
    raw = exchange(app.port, get('/extras/fails_gzipped', b'Accept-Encoding: gzip'))
    head, _, body = raw.partition(CRLF * 2)
    assert head.startswith(b'HTTP/1.1 200')
    assert b'content-encoding: gzip' in head.lower()
    assert body.startswith(b'2\r\n\x1f\x8b\r\n')  # gzip's magic bytes, its first chunk
    assert body.endswith(b'\r\n0\r\n\r\n<OPEN>')


def test_an_encoded_slash_is_a_slash_before_dispatch_as_granian_does(app):
    """Item 10, left: granian decodes %2F in the path; cheroot keeps it inside the segment."""
    assert body_of(app, '/extras/a%2Fb') == (200, repr(('a', 'b')))


def test_a_custom_reason_phrase_is_replaced_as_granian_does(app):
    """Item 10, left: granian sends the status code's standard phrase."""
    raw = exchange(app.port, get('/extras/reason'))
    assert raw.startswith(b'HTTP/1.1 200 OK\r\n')


def test_connects_authority_form_reaches_the_root_as_granian_does(app):
    """Item 10, left: CONNECT host:port is dispatched to / (405 from the page's allow tool)."""
    raw = exchange(app.port, b'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
    assert raw.startswith(b'HTTP/1.1 405')


def test_a_repeated_header_is_joined_with_a_bare_comma_as_granian_does(app):
    """A repeated request header arrives joined by granian with ',' (cheroot's is ', ')."""
    raw = exchange(app.port, get('/extras/header?name=Accept-Charset',
                                 b'Accept-Charset: iso-8859-5', b'Accept-Charset: utf-8;q=0.8'))
    assert raw.partition(CRLF * 2)[2].startswith(b"'iso-8859-5,utf-8;q=0.8'")


def test_100_continue_goes_out_only_once_the_app_reads_the_body_as_granian_does(app):
    """`100 Continue` goes out once the app reads the body (hyper); an answer before skips it.

    RFC 9110 §10.1.1 lets a server answer without it: the client then need not send the body.
    cheroot sends it as soon as it reads the request's head.
    """
    def ask(path):
        return (f'POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n'
                'Content-Length: 5\r\nExpect: 100-continue\r\n\r\n').encode()

    with connect(app.port) as sock:
        sock.sendall(ask('/extras/forbidden'))
        assert sock.recv(65536).startswith(b'HTTP/1.1 403')
    with connect(app.port) as sock:
        sock.sendall(ask('/extras/upload'))
        assert sock.recv(65536) == b'HTTP/1.1 100 Continue\r\n\r\n'
        sock.sendall(b'hello')
        answer = read_response(sock)
    assert (answer.status, answer.body) == (200, b'5')


@pytest.mark.parametrize('raw', [
    b'GET /static/\x00 HTTP/1.1\r\nHost: localhost\r\n\r\n',  # test_null_bytes
    b'geT /\r\n\r\n',  # test_malformed_request_line
    b'GET / HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n',  # test_malformed_header
    b'\x01\x02 garbage\r\n\r\n',  # test_garbage_in
    b'GET no/leading/slash HTTP/1.1\r\nHost: localhost\r\n\r\n',  # testParamErrors
], ids=['NUL in the target', 'no version', 'no colon', 'garbage', 'no slash'])
def test_what_hyper_cannot_parse_gets_an_empty_400_as_granian_does(app, raw):
    """A request hyper cannot parse gets 400, no body and a close; CherryPy's text never runs."""
    answer = exchange(app.port, raw)
    head, _, body = answer.partition(CRLF * 2)
    assert head.startswith(b'HTTP/1.1 400')
    assert b'content-length: 0' in head
    assert body == b''


def test_a_fragment_in_the_target_is_dropped_as_granian_does(app):
    """A `#fragment` a client should not send is dropped by hyper; cheroot answers 400."""
    assert exchange(app.port, get('/healthcheck#fragment')).startswith(b'HTTP/1.1 200')


def test_header_names_go_out_in_lower_case_as_granian_does(app):
    """Header names go out in lower case, as hyper writes them (names are case-insensitive)."""
    head = exchange(app.port, get('/healthcheck')).partition(CRLF * 2)[0]
    assert b'\r\ncontent-type: ' in head
    assert b'Content-Type' not in head


def test_a_static_files_validators_go_out_in_lower_case_as_granian_does(app):
    """`last-modified` and `content-length` in lower case; the 304 works on the value.

    CherryPy's suite looks them up as CherryPy spells them, finds none and fails
    (docs/cherrypy.md: test_modif sends an empty If-Modified-Since, testGzipStaticCache
    finds no Content-Length).
    """
    head = exchange(app.port, get('/logo.png')).partition(CRLF * 2)[0].decode('latin-1')
    fields = dict(line.split(': ', 1) for line in head.split('\r\n')[1:])
    assert {'last-modified', 'content-length'} <= set(fields)
    assert not {'Last-Modified', 'Content-Length'} & set(fields)
    status, headers, body = request(app.port, 'GET', '/logo.png',
                                    headers={'If-Modified-Since': fields['last-modified']})
    assert (status, body, headers['Content-Length']) == (304, b'', None)


def test_a_client_dropping_a_stream_ends_its_request(app):
    """A client that goes mid-stream ends the request: on_end_request runs, the stream stops.

    granian stops pulling the answer once hyper drops the connection, and closes it: CherryPy's
    request closes, as when cheroot's write fails (the suite's testEndRequestOnDrop).
    """
    with connect(app.port) as sock:
        sock.sendall(get('/extras/endless?name=dropped'))
        assert sock.recv(1024).startswith(b'HTTP/1.1 200')
    wait_until(lambda: body_of(app, '/extras/ended?name=dropped') == (200, 'True'),
               what='the end of the dropped request')
    assert body_of(app, '/extras/ended?name=other') == (200, 'False')


def test_bare_lf_line_ends_are_read_as_granian_does(app):
    """A request whose lines end in LF alone is read by hyper (RFC 9112 §2.2 allows it)."""
    answer = exchange(app.port, b'GET /healthcheck HTTP/1.1\nHost: localhost\n\n')
    assert answer.startswith(b'HTTP/1.1 200')


def guarded(app, method='GET'):
    """Call the guard around WSGI `app` in this process; return (status, headers, body)."""
    guard = serving.guard.Guard(app, serving.health.draining)
    started = []
    environ = {'HTTP_HOST': 'x', 'SERVER_PROTOCOL': 'HTTP/1.1', 'PATH_INFO': '/',
               'REQUEST_METHOD': method, 'wsgi.input': io.BytesIO()}
    answer = guard(environ, lambda status, headers, exc_info=None: started.append(
        (status, headers)))
    body = b''.join(answer)
    return started[-1][0], dict(started[-1][1]), body


class Raising:
    """An answer's iterator that raises on its first chunk and has no close()."""

    def __iter__(self):
        return self

    def __next__(self):
        raise RuntimeError('before the first chunk')


class Chunks:
    """An answer's chunks, with a close() that notes it ran."""

    def __init__(self, chunks):
        self.chunks, self.closed = iter(chunks), False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.chunks)

    def close(self):
        """Note the close."""
        self.closed = True


@pytest.mark.parametrize('closable', [True, False])
def test_a_body_that_disagrees_with_its_content_length_is_a_500(closable):
    """Item 2: 4 bytes declared as 3 (a HEAD keeps its length): the project's 500, logged."""
    def app(environ, start):
        start('200 OK', [('Content-Length', '3')])
        return Chunks([b'abcd']) if closable else iter([b'abcd'])

    assert guarded(app)[0] == serving.request.SERVER_ERROR
    head = guarded(lambda environ, start: start('200 OK', [('Content-Length', '3')]) or [],
                   method='HEAD')
    assert (head[0], head[2]) == ('200 OK', b'')


def test_a_body_that_restarts_with_an_error_while_joined_is_a_500():
    """Item 8: CherryPy's trap restarts the answer with exc_info while the guard joins it."""
    def app(environ, start):
        start('200 OK', [('Content-Length', '5')])

        def chunks():
            try:
                raise RuntimeError('midway')
            except RuntimeError:
                start('500 Internal Server Error', [], sys.exc_info())
            yield b'error'
        return chunks()

    assert guarded(app)[0] == serving.request.SERVER_ERROR


@pytest.mark.parametrize('closable', [True, False])
def test_a_stream_raising_before_its_first_chunk_is_a_500(closable):
    """Item 8: an iterator that raises on its first chunk: the project's 500, closed."""
    def chunks():
        raise RuntimeError('before the first chunk')
        yield b''  # a generator

    answers = []

    def app(environ, start):
        start('200 OK', [])
        answers.append(Chunks(chunks()) if closable else Raising())
        return answers[0]

    assert guarded(app)[0] == serving.request.SERVER_ERROR
    assert getattr(answers[0], 'closed', True)


@pytest.mark.parametrize('environment, cherrypys', [
    ('test_suite', True), (None, True), ('production', False), ('staging', False)])
def test_the_error_page_is_cherrypys_own_where_the_environment_shows_tracebacks(
        environment, cherrypys):
    """CherryPy's page, its traceback and version included, unless production-like."""
    before = dict(cherrypy.config)
    cherrypy.config['environment'] = environment
    try:
        page = serving.request.error_page('404 Not Found', 'gone', 'Traceback: here', '18.10.0')
    finally:
        cherrypy.config.clear()
        cherrypy.config.update(before)
    assert ('Traceback: here' in page) is cherrypys
    assert ('Powered by <a href="http://www.cherrypy.dev">CherryPy 18.10.0</a>' in page) \
        is cherrypys
    assert '<p>gone</p>' in page


def test_repeated_parameters_survive_the_mend(app):
    """Item 5: a repeated parameter with a bad byte keeps all its values, in order."""
    assert body_of(app, '/extras/echo?name=a&name=%FF&name=c&b=%FF') == \
        (200, repr((['a', '\ufffd', 'c'], '\ufffd')))


def test_a_header_blanked_twice_is_logged_once(app):
    """Item 7: the warning names a header once per worker, not once per request."""
    for _ in range(2):
        exchange(app.port, get('/extras/cookie', 'X-Name: José'.encode()))
    wait_until(lambda: 'a X-Name header arrived empty' in app.stderr(), what='the warning')
    assert app.stderr().count('a X-Name header arrived empty') == 1


@pytest.mark.parametrize('headers', [
    {'Content-Type': 'text/html', 'Content-Length': 442, 'Cache-Control': 'no-cache'},
    {'X-Name': 'José'},                      # Latin-1: encoded as CherryPy does
    {'X-Name': 'Ωmega'},                     # beyond Latin-1: CherryPy's RFC 2047 word
    {'X-Tab': 'a\tb', 'X-Del': 'a\x7fb'},    # control characters: deleted as CherryPy does
    {'X-Raw': b'bytes as given'},
])
def test_response_headers_go_on_the_wire_as_cherrypys(headers):
    """serving.request.ResponseHeaders gives the bytes CherryPy's HeaderMap gives, any value."""
    ours, stock = serving.request.ResponseHeaders(), cherrypy.lib.httputil.HeaderMap()
    for name, value in headers.items():
        ours[name] = stock[name] = value
    assert ours.output() == stock.output()


@pytest.mark.parametrize('moment', [0, 1_700_000_000, 1_700_000_000.999, 1_700_000_001.5])
def test_the_date_header_is_cherrypys(moment):
    """The Date worked out once a second is the one CherryPy works out for each answer."""
    assert serving.request.http_date(moment) == cherrypy.lib.httputil.HTTPDate(moment)


def test_a_response_starts_with_cherrypys_headers():
    """GuardedResponse starts as CherryPy's Response: the same headers, in a HeaderMap."""
    for _ in range(3):  # both made within one second, so their Dates can match
        ours, stock = serving.request.GuardedResponse(), cherrypy._cprequest.Response()
        if int(ours.time) == int(stock.time):
            break
    assert list(ours.headers.items()) == list(stock.headers.items())
    assert isinstance(ours.headers, cherrypy.lib.httputil.HeaderMap)
    assert (ours.status, ours.header_list, ours.body) == (stock.status, stock.header_list, [])
