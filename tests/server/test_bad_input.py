"""Bad input over raw sockets: every malformed, hostile or odd request gets a 4xx, 505 or a close.

Never a 500, never a traceback, never a byte from outside static/, and /healthcheck answers 200
after each case. The server is a real `python landing.py` process with 10 threads. (The
attack classes of the server issue, case by case, are in test_hostile.py.)
"""
import os
import time

import pytest
from hypothesis import HealthCheck as Hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, ServerProcess, request
from rawhttp import connect, exchange, get, statuses

HOST = b'Host: localhost'
# Bytes that would only appear in an answer if a file outside static/ leaked.
SECRETS = [b'root:x:0:0', b'import cherrypy', b'tools.staticdir', b'cherrypy==']


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """One landing.py process for the whole corpus, with a short header deadline for slowloris."""
    process = ServerProcess(
        tmp_path_factory.mktemp('bad-input'), env={'THREADS': '10', 'KEEPALIVE_TIMEOUT': '2'})
    try:
        yield process.wait_ready()
    finally:
        process.kill()


def request_bytes(*lines, body=b''):
    """Join request lines with CRLF and end the head, then append `body`."""
    return b'\r\n'.join(lines) + b'\r\n\r\n' + body


def assert_safe(raw):
    """The invariants every answer keeps: no 5xx but 501/505, no traceback, no leaked file."""
    for status in statuses(raw):
        assert status < 500 or status in (501, 505), raw[:300]
    assert b'Traceback' not in raw
    for secret in SECRETS:
        assert secret not in raw


CLOSED = 0  # stands for "the server closed without answering" among expected statuses
WAITING = -1  # "still waiting for the rest of the request" (cut off at KEEPALIVE_TIMEOUT)

# (case, request bytes, acceptable first answers)
CORPUS = [
    ('garbage request line', b'GARBAGE\r\n\r\n', {400}),
    # RFC 9112 §2.2: a server ignores empty lines before the request line, then waits.
    ('empty request line', b'\r\n\r\n', {400, WAITING}),
    ('request line with extra words', request_bytes(b'GET / HTTP/1.1 extra', HOST), {400}),
    # RFC 9112 §2.2 lets a recipient take a bare LF as a line end; hyper does, unambiguously.
    ('bare LF line ends', b'GET / HTTP/1.1\nHost: localhost\n\n', {200, 400}),
    ('unknown method', request_bytes(b'FOO / HTTP/1.1', HOST), {405}),
    ('TRACE', request_bytes(b'TRACE / HTTP/1.1', HOST), {405}),
    ('TRACE on the health check', request_bytes(b'TRACE /healthcheck HTTP/1.1', HOST), {405}),
    ('CONNECT', request_bytes(b'CONNECT localhost:443 HTTP/1.1', HOST), {400, 404, 405}),
    ('HTTP/0.9 simple request', b'GET /\r\n', {400}),
    ('HTTP/2.0', request_bytes(b'GET / HTTP/2.0', HOST), {400, 505}),
    ('HTTP/1.10', request_bytes(b'GET / HTTP/1.10', HOST), {400, 505}),
    ('HTTP/3', request_bytes(b'GET / HTTP/3', HOST), {400, 505}),
    ('HTTP/1.1 without Host', request_bytes(b'GET / HTTP/1.1'), {400}),
    ('oversized request line', request_bytes(b'GET /' + b'a' * 20000 + b' HTTP/1.1', HOST),
     {414, 431}),
    ('oversized header', request_bytes(b'GET / HTTP/1.1', HOST, b'X-Big: ' + b'a' * 20000),
     {413, 431}),
    ('too many headers', request_bytes(
        b'GET / HTTP/1.1', HOST, *[b'X-%d: %s' % (i, b'v' * 40) for i in range(600)]),
     {413, 431}),
    ('oversized body', request_bytes(b'POST / HTTP/1.1', HOST, b'Content-Length: 99999999'),
     {413}),
    ('conflicting Content-Length', request_bytes(
        b'POST /healthcheck HTTP/1.1', HOST, b'Content-Length: 1', b'Content-Length: 2',
        body=b'ab'), {400, 405}),
    ('negative Content-Length', request_bytes(
        b'POST / HTTP/1.1', HOST, b'Content-Length: -1'), {400, 405}),
    ('broken chunked encoding', request_bytes(
        b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked', body=b'zz\r\n'), {400, 405}),
    # chunked last makes the framing unambiguous (RFC 9112 §6.3); / then refuses POST.
    ('unknown transfer coding', request_bytes(
        b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: gzip, chunked', body=b'0\r\n\r\n'),
     {400, 405, 501}),
    ('unknown transfer coding last', request_bytes(
        b'POST / HTTP/1.1', HOST, b'Transfer-Encoding: chunked, gzip', body=b'0\r\n\r\n'),
     {400, 501}),
    ('header line without colon', request_bytes(b'GET / HTTP/1.1', HOST, b'Bad Header'), {400}),
    ('non-UTF-8 path', request_bytes(b'GET /\xff\xfe HTTP/1.1', HOST), {400, 404}),
    ('encoded traversal', request_bytes(b'GET /static/%2e%2e/landing.py HTTP/1.1', HOST),
     {400, 403, 404}),
    ('encoded slash traversal', request_bytes(b'GET /static/..%2f..%2fetc/passwd HTTP/1.1', HOST),
     {400, 403, 404}),
    ('double-encoded traversal', request_bytes(
        b'GET /static/%252e%252e/landing.py HTTP/1.1', HOST), {400, 403, 404}),
    ('plain traversal', request_bytes(b'GET /static/../../../etc/passwd HTTP/1.1', HOST),
     {400, 403, 404}),
    ('absolute path', request_bytes(b'GET //etc/passwd HTTP/1.1', HOST), {400, 403, 404}),
    ('encoded NUL', request_bytes(b'GET /static/site.css%00.png HTTP/1.1', HOST),
     {400, 403, 404}),
    ('raw NUL in path', request_bytes(b'GET /static/\x00 HTTP/1.1', HOST), {400, 403, 404}),
    ('TLS ClientHello on the plain port',
     b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + bytes(range(64)), {400, CLOSED}),
]


@pytest.mark.parametrize('raw, expected', [
    pytest.param(raw, expected, id=case) for case, raw, expected in CORPUS])
def test_bad_request_gets_the_right_refusal_and_the_server_stays_healthy(server, raw, expected):
    """Each case gets its expected 4xx/505 (or a clean close); the health check still passes."""
    answer = exchange(server.port, raw, timeout=1 if WAITING in expected else 5)
    assert_safe(answer)
    first = statuses(answer)[:1] or [WAITING if answer.endswith(b'<TIMEOUT>') else CLOSED]
    assert first[0] in expected, answer[:300]
    assert request(server.port, 'GET', '/healthcheck')[:3:2] == (200, b'Yay')


def test_pipelined_requests_are_answered_in_order(server):
    """Two requests in one write get two answers, in order, on the same connection."""
    answer = exchange(server.port, get('/') + get('/healthcheck', b'Connection: close'))
    assert statuses(answer) == [200, 200]
    assert answer.endswith(b'Yay')


def test_slowloris_trickling_headers_is_cut_off(server):
    """A client still sending headers after KEEPALIVE_TIMEOUT gets 408 or a close."""
    with connect(server.port, timeout=10) as sock:
        sock.sendall(b'GET / HTTP/1.1\r\n')
        started = time.monotonic()
        answer = b''
        try:
            for _ in range(5):
                sock.sendall(b'X-a: b\r\n')
                chunk = sock.recv(4096)  # the server speaks only to give up on us
                if not chunk:
                    break
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert statuses(answer) in ([], [408])
    assert time.monotonic() - started < 10
    assert request(server.port, 'GET', '/healthcheck')[0] == 200


methods = st.sampled_from([b'GET', b'HEAD', b'POST', b'PUT', b'OPTIONS', b'TRACE', b'get', b''])
paths = st.one_of(
    st.sampled_from([b'/', b'/healthcheck', b'/logo.png', b'/static/site.css', b'*']),
    st.binary(max_size=40).map(lambda b: b'/' + b),
    st.lists(st.sampled_from([b'..', b'%2e%2e', b'%2f', b'static', b'%00', b'.', b''])).map(
        lambda parts: b'/' + b'/'.join(parts)),
)
versions = st.sampled_from([b'HTTP/1.1', b'HTTP/1.0', b'HTTP/2', b'HTTP/1.1x', b''])
header_lines = st.lists(st.one_of(
    st.just(HOST),
    st.sampled_from([b'Content-Length: 5', b'Transfer-Encoding: chunked', b'Expect: 100-continue',
                     b'Connection: close', b'Content-Length: x', b'Range: bytes=0-1,1-2']),
    st.binary(max_size=60).filter(lambda b: b'\r\n' not in b),
), max_size=6)
generated_requests = st.one_of(
    st.builds(lambda m, p, v, h, body: b' '.join(x for x in (m, p, v) if x) + b'\r\n'
              + b''.join(line + b'\r\n' for line in h) + b'\r\n' + body,
              methods, paths, versions, header_lines, st.binary(max_size=64)),
    st.binary(max_size=300),
)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[Hypothesis.function_scoped_fixture, Hypothesis.too_slow])
@given(raw=generated_requests)
def test_generated_requests_never_break_the_server(server, raw):
    """Property: any bytes at all get a safe answer or a close, and the server stays healthy."""
    assert_safe(exchange(server.port, raw, timeout=0.5))
    assert request(server.port, 'GET', '/healthcheck')[0] == 200


def test_no_static_answer_ever_contains_app_source(server):
    """Static answers are the shipped files byte for byte (nothing else leaks through them)."""
    with open(os.path.join(ROOT, 'static', 'site.css'), 'rb') as handle:
        assert request(server.port, 'GET', '/static/site.css')[2] == handle.read()
