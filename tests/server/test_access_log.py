"""The access log: serving.access_log writes exactly the line CherryPy's own would."""
import datetime
import functools
import io
import json
import logging
import re

import cherrypy
import pytest
from cherrypy._cplogging import LogManager
from cherrypy.lib import httputil

import landing
import serving.access_log
import serving.settings
from conftest import request, wait_until


class Lines(logging.Handler):
    """A logging handler that keeps the messages it receives."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        """Keep the record's message."""
        self.messages.append(record.getMessage())


@pytest.fixture
def in_request():
    """Install a request/response pair as the current one, as CherryPy does per request."""
    request = cherrypy._cprequest.Request(
        httputil.Host('127.0.0.1', 5555), httputil.Host('127.0.0.1', 80, 'client.example'))
    response = cherrypy._cprequest.Response()
    response.output_status = None  # set by finalize() in a real request
    cherrypy.serving.load(request, response)
    yield request, response
    cherrypy.serving.clear()


def log_line(manager_class, appid):
    """Return the line `manager_class.access()` logs for the current request."""
    manager = manager_class(appid, 'test-access-log')
    lines = Lines()
    manager.access_log.addHandler(lines)
    manager.access_log.propagate = False
    manager.access()
    return lines.messages


@pytest.mark.parametrize('request_line, user_agent, referer, status, length', [
    ('GET / HTTP/1.1', 'curl/8.0', '', b'200 OK', '442'),
    ('GET /a%22b HTTP/1.1', 'Mozilla "quoted" \\ back', 'http://x/"y"', b'404 Not Found', '513'),
    ('HEAD /logo.png HTTP/1.0', 'Ünïcödé agent ✓', 'http://ref.example/é', b'304 Not Modified', ''),
    ('GET /\x7f\x01 HTTP/1.1', 'tab\there', '', None, None),
])
def test_fast_access_line_matches_cherrypys(in_request, request_line, user_agent, referer, status,
                                            length):
    """Quotes, backslashes, non-ASCII and control bytes are escaped exactly as CherryPy does."""
    request, response = in_request
    request.request_line = request_line
    request.headers = httputil.HeaderMap({'User-Agent': user_agent, 'Referer': referer})
    response.output_status = status
    if length is not None:
        response.headers['Content-Length'] = length
    stock = log_line(LogManager, 'stock')
    fast = log_line(serving.access_log.AccessLog, 'fast')
    assert fast == stock
    assert len(fast) == 1


def test_requests_that_opt_out_are_not_logged(in_request):
    """A request with `access_log = False` (the health check's config) writes no line."""
    request, _ = in_request
    request.request_line = 'GET /healthcheck HTTP/1.1'
    request.access_log = False
    assert log_line(serving.access_log.AccessLog, 'quiet') == []


def test_an_access_log_set_above_info_writes_no_line(in_request):
    """A logger level above INFO silences the access log, as with CherryPy's own access()."""
    request, _ = in_request
    request.request_line = 'GET / HTTP/1.1'
    manager = serving.access_log.AccessLog('silenced', 'test-access-log')
    lines = Lines()
    manager.access_log.addHandler(lines)
    manager.access_log.propagate = False
    manager.access_log.setLevel(logging.WARNING)
    manager.access()
    assert lines.messages == []


def test_a_line_names_the_access_log_as_its_source(in_request):
    """The record names serving/access_log.py's access() (%(pathname)s, %(funcName)s)."""
    request, _ = in_request
    request.request_line = 'GET / HTTP/1.1'
    manager = serving.access_log.AccessLog('sourced', 'test-access-log')
    records = []
    manager.access_log.addHandler(logging.Handler())
    manager.access_log.handlers[-1].emit = records.append
    manager.access_log.propagate = False
    manager.access()
    assert [(r.pathname, r.funcName) for r in records] == [
        (serving.access_log.__file__, 'access')]


def test_a_custom_format_falls_back_to_cherrypys_formatter(in_request):
    """Set access_log_format and the fast path steps aside for CherryPy's general one."""
    request, _ = in_request
    request.request_line = 'GET / HTTP/1.1'
    manager = serving.access_log.AccessLog('custom', 'test-access-log')
    manager.access_log_format = '{h} {r} {s}'
    lines = Lines()
    manager.access_log.addHandler(lines)
    manager.access_log.propagate = False
    manager.access()
    assert lines.messages == ['client.example GET / HTTP/1.1 -']


def test_a_failing_format_is_logged_as_an_error_not_raised(in_request, monkeypatch):
    """If building the line fails, the error goes to the error log and the request goes on."""
    request, _ = in_request
    request.request_line = 42  # no str: the line cannot be built from it
    errors = []
    monkeypatch.setattr(serving.access_log.AccessLog, '__call__',
                        lambda self, **kw: errors.append(kw))
    serving.access_log.AccessLog('broken', 'test-access-log').access()
    assert errors == [{'traceback': True}]


# ---- In a real process: what `docker logs` and a log collector read -----------------------

VISITS = [('GET', '/', {}), ('GET', '/?utm_source=news&fbclid=x', {'Referer': 'https://t.co/x'}),
          ('HEAD', '/logo.png', {'User-Agent': 'probe "quoted" \\ agent'}),
          ('GET', '/no-such-page', {}), ('POST', '/', {})]


def visit_all(port):
    """Make the VISITS and a few health probes; return the statuses of the visits."""
    got = []
    for method, path, headers in VISITS:
        got.append(request(port, method, path, headers)[0])
        request(port, 'GET', '/healthcheck')
    return got


def test_json_lines_parse_and_name_every_field(start_server):
    """LOG_FORMAT=json: every stdout line is one JSON object with the fields collectors want."""
    served = start_server(env={'LOG_FORMAT': 'json'}).wait_ready()
    statuses = visit_all(served.port)
    assert served.stop() == 0
    lines = served.stdout().splitlines()
    records = [json.loads(line) for line in lines]  # every line, or this raises
    assert [(r['method'], r['status']) for r in records] == [
        (method, status) for (method, _, _), status in zip(VISITS, statuses, strict=True)]
    second = records[1]
    assert (second['path'], second['query']) == ('/', 'utm_source=news&fbclid=x')
    assert second['referer'] == 'https://t.co/x'
    assert records[2]['user_agent'] == 'probe "quoted" \\ agent'
    for record in records:
        assert set(record) == {'time', 'remote_addr', 'method', 'path', 'query', 'protocol',
                               'status', 'bytes', 'duration_ms', 'user_agent', 'referer',
                               'request_id'}
        assert re.fullmatch('[0-9a-f]{32}', record['request_id'])
        assert record['remote_addr'] == '127.0.0.1'
        assert record['protocol'] == 'HTTP/1.1'
        assert 0 <= record['duration_ms'] < 5000
        assert datetime.datetime.fromisoformat(record['time']).tzinfo is not None
    assert records[0]['bytes'] == len(landing.PAGE.encode())


COMBINED = re.compile(
    r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\] "(?P<line>[^"]*)" (?P<status>\d{3}) '
    r'(?P<bytes>\d+|-) "(?P<referer>[^"]*)" "(?P<agent>(?:[^"\\]|\\.)*)"')


@pytest.mark.parametrize('env', [{}, {'LOG_FORMAT': 'combined'}])
def test_combined_is_the_default_and_stays_as_it_was(start_server, env):
    """By default each line is Apache's Combined Log Format, exactly as before JSON existed."""
    served = start_server(env=env).wait_ready()
    visit_all(served.port)
    assert served.stop() == 0
    lines = served.stdout().splitlines()
    assert len(lines) == len(VISITS)  # one per visit, none for the probes
    parsed = [COMBINED.fullmatch(line) for line in lines]
    assert all(parsed), lines
    assert [m['line'] for m in parsed] == [
        'GET / HTTP/1.1', 'GET /?utm_source=news&fbclid=x HTTP/1.1', 'HEAD /logo.png HTTP/1.1',
        'GET /no-such-page HTTP/1.1', 'POST / HTTP/1.1']
    assert parsed[1]['referer'] == 'https://t.co/x'
    assert parsed[2]['agent'] == 'probe \\"quoted\\" \\ agent'  # as CherryPy escapes


def test_an_unknown_log_format_is_refused_naming_the_variable():
    """LOG_FORMAT=xml: ConfigError naming LOG_FORMAT and the formats it takes."""
    with pytest.raises(serving.settings.ConfigError,
                       match="^LOG_FORMAT must be one of combined, json"):
        serving.settings.Settings.from_environ({'LOG_FORMAT': 'xml'}, {})


def test_json_line_from_the_current_request(in_request, monkeypatch):
    """The JSON line names the request's own figures, as a log collector would index them."""
    request, response = in_request
    request.method, request.path_info, request.query_string = 'GET', '/x', 'a=1'
    request.protocol = (1, 0)
    request.headers = httputil.HeaderMap({'User-Agent': 'curl/8', 'Referer': 'https://r/'})
    response.output_status = b'200 OK'
    response.headers['Content-Length'] = '12'
    [line] = log_line(functools.partial(serving.access_log.AccessLog, json=True), 'json')
    record = json.loads(line)
    assert {key: record[key] for key in ('method', 'path', 'query', 'protocol', 'status', 'bytes',
                                         'user_agent', 'referer', 'remote_addr')} == {
        'method': 'GET', 'path': '/x', 'query': 'a=1', 'protocol': 'HTTP/1.0', 'status': 200,
        'bytes': 12, 'user_agent': 'curl/8', 'referer': 'https://r/', 'remote_addr': '127.0.0.1'}


def test_a_failing_json_line_is_logged_as_an_error_not_raised(in_request, monkeypatch):
    """If the JSON line cannot be built, the error goes to the error log, as for Combined."""
    monkeypatch.setattr(serving.access_log.json, 'dumps', lambda *args, **kwargs: 1 / 0)
    errors = []
    monkeypatch.setattr(serving.access_log.AccessLog, '__call__',
                        lambda self, **kw: errors.append(kw))
    serving.access_log.AccessLog('broken-json', 'test-access-log', json=True).access()
    assert errors == [{'traceback': True}]


def test_a_line_reaches_stdout_while_the_server_runs(start_server):
    """Batched, a visit's line still shows in `docker logs` within moments, not at exit."""
    served = start_server().wait_ready()
    assert request(served.port, 'GET', '/')[0] == 200
    wait_until(lambda: '"GET / HTTP/1.1" 200' in served.stdout(), deadline=5,
               what='the access line on stdout')


class Written(io.StringIO):
    """A text stream that counts the writes that reach it."""

    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        """Count the write, then keep the text."""
        self.writes += 1
        return super().write(text)


def test_batched_lines_go_out_in_order_in_one_write():
    """The lines of many requests reach the stream together, in the order they came."""
    stream = Written()
    batched = serving.access_log.BatchedStream(stream, every=3600)  # the thread stays asleep
    for number in range(5):
        batched.write(f'line {number}\n')
        batched.flush()
    assert stream.getvalue() == ''  # flush() leaves them for the batch
    batched.drain()
    assert stream.getvalue() == ''.join(f'line {number}\n' for number in range(5))
    assert stream.writes == 1


def test_the_thread_writes_the_batch_on_its_own():
    """Nobody drains: within moments the thread has written what came."""
    stream = Written()
    batched = serving.access_log.BatchedStream(stream, every=0.01)
    batched.write('a line\n')
    wait_until(lambda: stream.getvalue() == 'a line\n', deadline=5, what='the batch written')


def test_a_closed_stream_loses_the_batch_quietly():
    """With stdout closed under the server the lines are dropped, and nothing raises."""
    stream = Written()
    batched = serving.access_log.BatchedStream(stream, every=3600)
    stream.close()
    batched.write('a line\n')
    batched.drain()
    assert not batched.lines
