"""Static files prod.conf declares are answered before CherryPy, exactly as CherryPy answers them.

A real `python counting_landing.py` serves a copy of the app whose prod.conf also declares
/cherrypy-static/ and /cherrypy-logo.png: the same files, with a setting that changes nothing
in an answer (`debug = False`) but that serving/static_files.py leaves to CherryPy. Each answer
of the fast path is checked against CherryPy's own for the same file, header for header and
byte for byte, with the access log lines they write; /cherrypy_requests counts the requests
CherryPy's pipeline ran.
"""
import http.client
import json
import os
import shutil
import socket
import time

import cherrypy
import pytest

import hostile_corpus as corpus
from conftest import OUR_HEADERS, ROOT, copy_app, request, wait_until
from serving import static_config, static_files
from serving.streaming import ONE_PIECE

# The comparison sections: CherryPy's own answer for the same files.
CHERRYPY_SECTIONS = '''
[/cherrypy-static]
tools.staticdir.on = True
tools.staticdir.dir = "static"
tools.staticdir.debug = False
tools.response_headers.on = True
tools.response_headers.headers = [("Cache-Control", "max-age=3600")]

[/cherrypy-logo.png]
tools.staticfile.on = True
tools.staticfile.filename = "static/logo.png"
tools.staticfile.debug = False
tools.response_headers.on = True
tools.response_headers.headers = [("Cache-Control", "max-age=3600")]

[/quiet]
tools.staticdir.on = True
tools.staticdir.dir = "static"
tools.staticdir.content_types = {"css": "text/x-custom"}
request.access_log = False

[/cherrypy-quiet]
tools.staticdir.on = True
tools.staticdir.dir = "static"
tools.staticdir.content_types = {"css": "text/x-custom"}
tools.staticdir.debug = False
request.access_log = False

[/locked]
tools.staticdir.on = True
tools.staticdir.dir = "static"
tools.allow.on = True
tools.allow.methods = ["POST"]
'''
# Files beside the shipped ones: text that compresses, one piece kept in memory, one past
# IN_MEMORY read as it goes, a dotfile and a symlink out of static/.
TEXT = b'body { color: #222; }\n' * 40
MID = bytes(range(256)) * (static_config.IN_MEMORY // 256 - 10)  # kept in memory
BIG = b'0123456789abcdef' * (static_config.IN_MEMORY // 8)  # twice IN_MEMORY: read as it goes
NON_READERS = 20
# The files compared, as static/ holds them.
FILES = ('site.css', 'logo.png', 'favicon.ico', 'text.css', 'mid.bin', 'big.bin', 'missing.css',
         '.hidden', 'out.py', 'nested/deep.txt', 'nested', 'noext', 'data.zzz')
# Header sets of the comparison: none, gzip, ranges good and bad, validators good and bad.
LASTMOD = '{lastmod}'
VARIANTS = {
    'plain': {},
    'gzip': {'Accept-Encoding': 'gzip'},
    'range': {'Range': 'bytes=0-9'},
    'open range': {'Range': 'bytes=100-'},
    'suffix range': {'Range': 'bytes=-5'},
    'range past the end': {'Range': 'bytes=999999999-'},
    'two ranges': {'Range': 'bytes=0-0,5-6'},
    'garbage range': {'Range': 'pages=1'},
    'range and gzip': {'Range': 'bytes=0-9', 'Accept-Encoding': 'gzip'},
    'unchanged since': {'If-Modified-Since': LASTMOD},
    'unchanged since, gzip': {'If-Modified-Since': LASTMOD, 'Accept-Encoding': 'gzip'},
    'changed since': {'If-Modified-Since': 'Mon, 01 Jan 2001 00:00:00 GMT'},
    'garbage date': {'If-Modified-Since': 'yesterday'},
    'unmodified since': {'If-Unmodified-Since': LASTMOD},
    'modified since': {'If-Unmodified-Since': 'Mon, 01 Jan 2001 00:00:00 GMT'},
    'if-range': {'If-Range': LASTMOD, 'Range': 'bytes=0-3'},
    'quoted agent': {'User-Agent': 'probe "x" =?utf-8?q?caf=C3=A9?=', 'Referer': 'http://r/é'},
}


def start_copy(tmp_path_factory, log_format):
    """Serve the counting app with the extra files and comparison sections, THREADS=2."""
    app = copy_app(tmp_path_factory.mktemp('static') / 'app')
    shutil.copy2(os.path.join(ROOT, 'tests', 'counting_landing.py'), app)
    with open(app / 'prod.conf', 'a') as conf:
        conf.write(CHERRYPY_SECTIONS)
    static = app / 'static'
    (static / 'text.css').write_bytes(TEXT)
    (static / 'mid.bin').write_bytes(MID)
    (static / 'big.bin').write_bytes(BIG)
    (static / '.hidden').write_bytes(b'secret')
    (static / 'nested').mkdir()
    (static / 'nested' / 'deep.txt').write_bytes(b'deep ' * 100)
    (static / 'out.py').symlink_to(app / 'landing.py')
    (static / 'noext').write_bytes(b'no extension')
    (static / 'data.zzz').write_bytes(b'no known type')
    return CountingProcess(app, tmp_path_factory.mktemp('static-run'), log_format).wait_ready()


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """The copy, logging CherryPy's Combined lines."""
    process = start_copy(tmp_path_factory, 'combined')
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope='module')
def json_served(tmp_path_factory):
    """The copy, logging JSON lines (LOG_FORMAT=json)."""
    process = start_copy(tmp_path_factory, 'json')
    try:
        yield process
    finally:
        process.stop()


class CountingProcess(corpus.AppProcess):
    """counting_landing.py in the app folder, THREADS=2, on free ports."""

    def __init__(self, app, workdir, log_format):
        self.app = app
        super().__init__(app, workdir, env={'THREADS': '2', 'LOG_FORMAT': log_format},
                         script='counting_landing.py')

    def cherrypy_requests(self):
        """Return how many requests CherryPy's pipeline has run, the one asking included."""
        status, _, body = request(self.port, 'GET', '/cherrypy_requests')
        assert status == 200
        return int(body)


def answer(port, method, path, headers):
    """Return (status, headers but Date and X-Request-ID, body) of one request.

    An error page names the path asked for: it is read as /static/'s, its length left out.
    """
    status, got, body = request(port, method, path, headers=headers)
    skipped = ('date', 'x-request-id', 'content-length') if status >= 400 else (
        'date', 'x-request-id')
    kept = sorted((name.lower(), value) for name, value in got.items()
                  if name.lower() not in skipped)
    # CherryPy pads an error page to 512 bytes (for old browsers): the padding is left out too.
    return status, kept, body.replace(b'/cherrypy-static/', b'/static/').rstrip(b' ')


def test_static_answers_never_run_cherrypys_pipeline(served):
    """GET, HEAD, 304 and a range of a static file: CherryPy runs none; its own section, each."""
    lastmod = request(served.port, 'GET', '/logo.png')[1]['Last-Modified']
    before = served.cherrypy_requests()
    for method, path, headers in (
            ('GET', '/logo.png', {}), ('HEAD', '/logo.png', {}),
            ('GET', '/static/site.css', {'Accept-Encoding': 'gzip'}),
            ('GET', '/static/logo.png', {'If-Modified-Since': lastmod}),
            ('GET', '/static/big.bin', {'Range': 'bytes=0-99'}),
            ('GET', '/favicon.ico?v=2', {})):
        assert request(served.port, method, path, headers=headers)[0] in (200, 206, 304)
    assert served.cherrypy_requests() == before + 1
    assert request(served.port, 'GET', '/cherrypy-static/site.css')[0] == 200
    assert served.cherrypy_requests() == before + 3


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_static_answer_is_the_one_cherrypy_gives(served, variant):
    """Each file, GET and HEAD, under each header set: status, headers and bytes as CherryPy's."""
    lastmod = request(served.port, 'GET', '/static/site.css')[1]['Last-Modified']
    headers = {name: value.replace(LASTMOD, lastmod) for name, value in VARIANTS[variant].items()}
    for name in FILES:
        for method in ('GET', 'HEAD'):
            ours = answer(served.port, method, f'/static/{name}', headers)
            cherrypys = answer(served.port, method, f'/cherrypy-static/{name}', headers)
            assert ours == cherrypys, (method, name)
    for method in ('GET', 'HEAD'):
        assert answer(served.port, method, '/logo.png', headers) == \
            answer(served.port, method, '/cherrypy-logo.png', headers)


def raw(port, request_text):
    """Send `request_text` on a new connection; return the bytes until the server closes."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall(request_text.encode('latin-1'))
        received = b''
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = sorted(line.lower() for line in lines[1:]
                     if not line.lower().startswith(('date:', 'x-request-id:')))
    return lines[0], headers, body


@pytest.mark.parametrize('path', ['/static/site.css', '/static/mid.bin', '/logo.png'])
def test_http_1_0_static_answers_are_cherrypys(served, path):
    """HTTP/1.0 gets no ranges from CherryPy (Accept-Ranges neither): nor from the fast path."""
    theirs = path.replace('/static/', '/cherrypy-static/').replace('/logo', '/cherrypy-logo')
    for extra in ('', 'Range: bytes=0-9\r\n', 'If-Modified-Since: yesterday\r\n'):
        text = 'GET {} HTTP/1.0\r\nHost: x\r\n' + extra + '\r\n'
        assert raw(served.port, text.format(path)) == raw(served.port, text.format(theirs))


def logged_during(process, make_requests):
    """Return the lines `make_requests()` has the server write to stdout, once they are out.

    Access lines go out in batches (access_log.BatchedStream), in order: a request for a
    marker before and one after bound them.
    """
    tag = os.urandom(8).hex()
    request(process.port, 'GET', f'/static/begin-{tag}')
    make_requests()
    request(process.port, 'GET', f'/static/end-{tag}')

    def written():
        with open(process.stdout_path, encoding='utf-8') as out:
            lines = out.read().splitlines()
        return lines if any(f'end-{tag}' in line for line in lines) else None
    lines = wait_until(written, what='the access lines')
    begin = next(at for at, line in enumerate(lines) if f'begin-{tag}' in line)
    end = next(at for at, line in enumerate(lines) if f'end-{tag}' in line)
    return lines[begin + 1:end]


def test_static_answers_are_logged_as_cherrypy_logs_them(served):
    """The access line of each answer is CherryPy's for the same request, byte for byte."""
    lastmod = request(served.port, 'GET', '/static/site.css')[1]['Last-Modified']
    asked = [('GET', '/static/site.css?utm_source=ad&x=%C3%A9', {'Referer': 'http://a/"b"'}),
             ('HEAD', '/static/text.css', {'Accept-Encoding': 'gzip'}),
             ('GET', '/static/text.css', {'Accept-Encoding': 'gzip'}),
             ('GET', '/static/mid.bin', {'Range': 'bytes=5-'}),
             ('GET', '/static/site.css', {'If-Modified-Since': lastmod,
                                          'User-Agent': 'Ünï "agent"'})]

    def ask():
        for method, path, headers in asked:
            request(served.port, method, path, headers=headers)
            request(served.port, method, path.replace('/static/', '/cherrypy-static/'),
                    headers=headers)
    lines = [line.split('] ', 1)[1] for line in logged_during(served, ask)
             if 'static/' in line]
    assert len(lines) == 2 * len(asked)
    for ours, cherrypys in zip(lines[::2], lines[1::2], strict=True):
        assert ours == cherrypys.replace('/cherrypy-static/', '/static/')


@pytest.mark.parametrize('method', ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'])
def test_other_methods_on_static_files_get_cherrypys_answer(served, method):
    """Only GET and HEAD are a static file's: any other method gets what CherryPy answers."""
    for name in ('site.css', 'big.bin', 'missing.css'):
        assert answer(served.port, method, f'/static/{name}', {'Content-Length': '0'}) == \
            answer(served.port, method, f'/cherrypy-static/{name}', {'Content-Length': '0'})


@pytest.mark.parametrize('name', ['site.css', 'noext', 'data.zzz', 'logo.png'])
def test_a_section_of_its_own_types_and_no_log_is_cherrypys(served, name):
    """content_types, no response_headers and `request.access_log = False`: as CherryPy has it."""
    def ask():
        for method in ('GET', 'HEAD'):
            assert answer(served.port, method, f'/quiet/{name}', {}) == \
                answer(served.port, method, f'/cherrypy-quiet/{name}', {})
    assert not [line for line in logged_during(served, ask) if 'quiet/' in line]


def test_json_access_lines_are_cherrypys(json_served):
    """LOG_FORMAT=json: each static answer's line holds what CherryPy's line holds."""
    asked = [('GET', '/static/site.css?utm_source=ad&x=%C3%A9', {'Referer': 'http://a/b'}),
             ('GET', '/static/text.css', {'Accept-Encoding': 'gzip', 'User-Agent': 'Ünï'}),
             ('HEAD', '/static/mid.bin', {'Range': 'bytes=5-'})]

    def ask():
        for method, path, headers in asked:
            request(json_served.port, method, path, headers=headers)
            request(json_served.port, method, path.replace('/static/', '/cherrypy-static/'),
                    headers=headers)
    lines = [json.loads(line) for line in logged_during(json_served, ask)
             if line.startswith('{') and 'static/' in line]
    assert len(lines) == 2 * len(asked)
    for ours, cherrypys in zip(lines[::2], lines[1::2], strict=True):
        assert len(ours.pop('request_id')) == len(cherrypys.pop('request_id')) == 32
        assert 0 <= ours.pop('duration_ms') < 1000
        assert ours.pop('time')[:16] == cherrypys.pop('time')[:16]
        cherrypys.pop('duration_ms')
        assert ours == {**cherrypys, 'path': cherrypys['path'].replace(
            '/cherrypy-static/', '/static/')}


def test_a_target_byte_past_ascii_is_refused_before_any_static_answer(served):
    """A raw byte 0xFF in the query: granian answers 400, so a logged target is ASCII as CherryPy's.

    The fast path logs the target as granian gives it, where CherryPy decodes it as UTF-8:
    the same for ASCII, the only targets that arrive.
    """
    for path in ('/static/site.css', '/cherrypy-static/site.css'):
        status = raw(served.port, f'GET {path}?x=\xff HTTP/1.1\r\nHost: x\r\n'
                     'Connection: close\r\n\r\n')[0]
        assert status == 'HTTP/1.1 400 Bad Request'


def test_a_tool_the_app_turns_on_for_static_files_is_obeyed(served):
    """A static section with another tool on (allow: POST only) is CherryPy's: GET gets 405."""
    status, headers, _ = request(served.port, 'GET', '/locked/site.css')
    assert status == 405
    assert headers['Allow'] == 'POST'


def test_a_changed_file_is_served_as_it_is_now(served):
    """Rewritten: the new bytes and Last-Modified at once; removed: 404; back: served again."""
    path = served.app / 'static' / 'changing.txt'
    path.write_bytes(b'first version ' * 20)
    os.utime(path, (time.time() - 100, time.time() - 100))
    status, first, body = request(served.port, 'GET', '/static/changing.txt')
    assert (status, body) == (200, b'first version ' * 20)
    path.write_bytes(b'second ' * 30)
    status, second, body = request(served.port, 'GET', '/static/changing.txt')
    assert (status, body) == (200, b'second ' * 30)
    assert second['Last-Modified'] != first['Last-Modified']
    path.unlink()
    assert request(served.port, 'GET', '/static/changing.txt')[0] == 404
    path.write_bytes(b'third')
    assert request(served.port, 'GET', '/static/changing.txt')[2] == b'third'


def test_readers_that_stop_on_a_file_in_memory_hold_no_thread(served):
    """20 clients stop reading a file kept in memory, THREADS=2: no thread is held for any.

    granian writes such an answer from its own I/O, so the worker's threads stay as many and
    the probe and the page still answer.
    """
    assert ONE_PIECE < len(MID) <= static_config.IN_MEMORY
    threads = corpus.tree_kb(served.pid, 'Threads')
    with corpus.Sockets() as held:
        corpus.open_many(NON_READERS, lambda: corpus.non_reader(
            served.port, '/static/mid.bin', pipelined=1), held)
        assert len(held) == NON_READERS
        assert request(served.port, 'GET', '/healthcheck', timeout=5)[0] == 200
        assert request(served.port, 'GET', '/', timeout=5)[0] == 200
        assert corpus.tree_kb(served.pid, 'Threads') < threads + NON_READERS // 2


def test_static_answers_carry_our_headers_and_count_as_static(served):
    """The security headers and the request ID are on a static answer as on every other."""
    status, headers, _ = request(served.port, 'GET', '/static/site.css')
    assert status == 200
    for name, value in OUR_HEADERS:
        assert headers[name] == value
    assert len(headers['X-Request-ID']) == 32


def test_remembered_paths_and_bytes_are_bounded(tmp_path):
    """Random paths cannot grow the table; files past the memory budget are read as they go.

    Three files past ONE_PIECE and a budget for two: the third is streamed, its bytes the same.
    """
    contents = {name: bytes([number]) * (ONE_PIECE + 1000)
                for number, name in enumerate(('a.bin', 'b.bin', 'c.bin'))}
    (tmp_path / 'static').mkdir()
    for name, content in contents.items():
        (tmp_path / 'static' / name).write_bytes(content)
    app = static_app({'/': {'tools.staticdir.root': str(tmp_path)}, '/static': STATIC})
    files = static_files.StaticFiles(app, remembered=8, held=2 * (ONE_PIECE + 1000))
    for name, content in contents.items():
        status, _, body = files.answer({**GET_SITE_CSS, 'PATH_INFO': f'/static/{name}'})
        assert (status, b''.join(body)) == ('200 OK', content)
    assert files.held == 2 * (ONE_PIECE + 1000)
    assert [known.body is not None for known in files.known.values()] == [True, True, False]
    for number in range(50):
        assert files.answer({**GET_SITE_CSS, 'PATH_INFO': f'/static/{number}.css'}) is None
    assert len(files.known) == 8
    assert files.held == 0  # the three files were forgotten, and their bytes with them


def test_a_file_gone_between_its_check_and_its_read_is_left_to_cherrypy(tmp_path):
    """opened() of a file removed meanwhile is None: the answer is CherryPy's (a 404)."""
    assert static_files.opened(str(tmp_path / 'gone.bin')) is None


def test_a_connection_keeps_serving_after_static_answers(served):
    """Keep-alive: a 206, a 304 and a HEAD on one connection, then the page, all framed right."""
    lastmod = request(served.port, 'GET', '/logo.png')[1]['Last-Modified']
    conn = http.client.HTTPConnection('127.0.0.1', served.port, timeout=10)
    try:
        for method, path, headers, status in (
                ('GET', '/static/big.bin', {'Range': 'bytes=10-19'}, 206),
                ('GET', '/logo.png', {'If-Modified-Since': lastmod}, 304),
                ('HEAD', '/static/big.bin', {}, 200),
                ('GET', '/static/big.bin', {}, 200),
                ('GET', '/', {}, 200)):
            conn.request(method, path, headers=headers)
            got = conn.getresponse()
            body = got.read()
            assert got.status == status
            if path == '/static/big.bin' and status == 206:
                assert body == BIG[10:20]
            if method == 'GET' and status == 200 and path != '/':
                assert body == BIG
    finally:
        conn.close()


class Root:
    """An app root with no handlers: only the config under test matters."""


def static_app(config):
    """Return a CherryPy Application (not mounted) for Root with `config`, static/ beside it.

    It logs with our AccessLog, as a mounted app does once the engine starts, and has
    CherryPy's encode tool off, as serving's configure() turns it off.
    """
    from serving.access_log import AccessLog

    app = cherrypy.Application(Root(), '', {'/': {
        'tools.staticdir.root': ROOT, 'tools.staticfile.root': ROOT, 'tools.encode.on': False}})
    app.merge(config)
    app.log = AccessLog(app.log.appid, app.log.logger_root)
    return app


GET_SITE_CSS = {'REQUEST_METHOD': 'GET', 'SERVER_PROTOCOL': 'HTTP/1.1', 'QUERY_STRING': '',
                'REMOTE_ADDR': '127.0.0.1', 'PATH_INFO': '/static/site.css'}
STATIC = {'tools.staticdir.on': True, 'tools.staticdir.dir': 'static'}


@pytest.mark.parametrize('config', [
    {'/static': {**STATIC, 'request.dispatch': cherrypy.dispatch.MethodDispatcher()}},
    {'/static': {**STATIC, 'hooks.before_handler': print}},
    {'/static': {**STATIC, 'response.headers.x-extra': 'yes'}},
    {'/static': STATIC, '/static/site.css': {'tools.staticdir.on': False}},
    {'/static': {**STATIC, 'tools.gzip.on': True}},
    {'/static': {**STATIC, 'tools.encode.on': True}},
    {'/static': {**STATIC, 'tools.staticdir.index': 'index.html'}},
], ids=['another dispatcher', 'a hook', 'response headers', 'the tool off below',
        'another tool', 'encode (a charset on text/css)', 'an index'])
def test_a_section_the_fast_path_cannot_answer_exactly_is_left_to_cherrypy(config):
    """Where CherryPy's answer would differ from a plain file's, the fast path answers nothing."""
    assert static_files.StaticFiles(static_app({'/static': STATIC})).answer(
        dict(GET_SITE_CSS))[0] == '200 OK'
    assert static_files.StaticFiles(static_app(config)).answer(dict(GET_SITE_CSS)) is None


def test_an_access_log_turned_down_gets_no_static_line(in_process):
    """A logger set above INFO (an app silencing its access log) gets no line from the fast path."""
    import logging

    app = cherrypy.tree.apps['']
    lines = []
    handler = logging.Handler()
    handler.emit = lines.append
    app.log.access_log.addHandler(handler)
    level = app.log.access_log.level
    try:
        files = static_files.StaticFiles(app)
        files.answer(dict(GET_SITE_CSS))
        assert len(lines) == 1
        app.log.access_log.setLevel(logging.WARNING)
        assert files.answer(dict(GET_SITE_CSS))[0] == '200 OK'
        assert len(lines) == 1
    finally:
        app.log.access_log.setLevel(level)
        app.log.access_log.removeHandler(handler)
